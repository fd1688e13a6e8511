"""Chapter 06: (chapters 06–08) automatic instruction construction (templates, back-translation, self-instruct),
with the resumable JSONL stage and the ``Funnel`` that counts what every filter keeps."""
