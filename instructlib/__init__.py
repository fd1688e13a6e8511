"""Course tool: instructlib, the library behind the course "Large language models from theory to practice"."""

__version__ = "0.1.0"
REPO = "instructlib/llm-instructions-course"  # GitHub owner/name: Colab badges, install lines
