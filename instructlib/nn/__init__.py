"""Chapter 02 (and 03, 05): neural-network pieces built from scratch — attention and blocks, TinyGPT, LoRA, the optimizer set-up."""
