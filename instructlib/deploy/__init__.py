"""Chapter 10: deployment and online learning — export (merge, int8, GGUF), an OpenAI-compatible
server with iteration-level batching and token streaming, and the feedback loop (log, label, retrain, gate, hot-swap)."""
