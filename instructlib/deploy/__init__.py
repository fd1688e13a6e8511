"""Chapter 10: deployment and online learning — export (merge, int8, GGUF), an OpenAI-compatible
server with dynamic batching, and the feedback loop (log, label, retrain, gate, hot-swap)."""
