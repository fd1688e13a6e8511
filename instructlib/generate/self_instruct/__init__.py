"""Chapter 08: self-instruct — the bootstrapping loop (``loop``), its prompts and parsers (``prompts``),
the ``instructlib self-instruct`` command (``cli``) and instruction rewriting for the testbed (``rewrite``)."""
