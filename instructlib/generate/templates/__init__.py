"""Chapter 06: templates — PromptSource's format (``promptsource``), the course bank (``bank/``,
``bank_data``), rendering records with provenance (``render``), the linter (``lint``) and the CLI (``cli``)."""
