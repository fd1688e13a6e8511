"""Chapter 10: ``instructlib serve`` — the OpenAI-compatible server from the command line.

    instructlib serve --model tinygpt --port 8000
    instructlib serve --model DIR --adapter ADAPTER_DIR --log-dir logs/ --port 8000
    instructlib serve --model DIR --adapter-registry adapters/ --log-dir logs/   # hot-swap, rollback
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _known_name(name: str) -> bool:
    from ..models import HUB_ALIASES, SMOLLM2

    return name in ("tinygpt", SMOLLM2) or name in HUB_ALIASES


def build_config(args: argparse.Namespace):
    """The ``ServerConfig`` for parsed arguments (the model itself loads later, in the server)."""
    from .feedback import AdapterRegistry, load_with_adapter
    from .server import ServerConfig

    cache: dict = {}

    def base():
        if "model" not in cache:
            from ..models import load_model, load_tokenizer

            model = load_model(args.model)
            if not hasattr(model, "config") or not hasattr(model.config, "model_type"):
                model = model.to_hf(eos_token_id=load_tokenizer(args.model).eos_token_id)  # TinyGPT -> GPT-2
            cache["model"], cache["tokenizer"] = model, load_tokenizer(args.model)
        return cache["model"], cache["tokenizer"]

    def load():
        model, tokenizer = base()
        return load_with_adapter(model, tokenizer, args.adapter, name=args.name)

    def load_adapter(path: Path):
        model, tokenizer = base()
        return load_with_adapter(model, tokenizer, path, name=args.name)

    registry = AdapterRegistry(args.adapter_registry) if args.adapter_registry else None
    return ServerConfig(model_name=args.name, load=load, max_batch_size=args.max_batch_size,
                        batch_wait_ms=args.batch_wait_ms, max_queue=args.max_queue, log_dir=args.log_dir,
                        registry=registry, load_adapter=load_adapter if registry is not None else None)


def run_serve(args: argparse.Namespace) -> int:
    """Check the arguments, then serve until interrupted."""
    problems = []
    if not _known_name(args.model) and not Path(args.model).is_dir():
        problems.append(f"--model: {args.model!r} is neither a course model name (tinygpt, smollm2-135m-instruct, "
                        "a hub alias) nor a directory")
    if args.adapter is not None and not (Path(args.adapter) / "adapter_config.json").is_file():
        problems.append(f"--adapter: {str(args.adapter)!r} has no adapter_config.json (a peft adapter directory)")
    if args.adapter is not None and args.adapter_registry is not None:
        problems.append("--adapter and --adapter-registry exclude each other (the registry says which adapter is active)")
    if not 0 < args.port < 65536:
        problems.append(f"--port: {args.port} is not a TCP port")
    for name in ("max_batch_size", "max_queue"):
        if getattr(args, name) < 1:
            problems.append(f"--{name.replace('_', '-')}: must be at least 1")
    if args.batch_wait_ms < 0:
        problems.append(f"--batch-wait-ms: {args.batch_wait_ms:g} is negative")
    if problems:
        for p in problems:
            print(f"instructlib serve: error: {p}", file=sys.stderr)
        return 2
    args.name = args.name or args.model
    from .server import serve

    print(f"serving {args.name!r} on http://{args.host}:{args.port}/v1 (ready when GET /ready answers 200)",
          flush=True)
    serve(build_config(args), host=args.host, port=args.port, log_level=args.log_level)
    return 0


def register(subparsers) -> None:
    """Add ``serve`` to the ``instructlib`` command line."""
    p = subparsers.add_parser("serve", help="serve a model over the OpenAI HTTP API (chapter 10)",
                              description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="course model name (tinygpt, smollm2-135m-instruct) or directory")
    p.add_argument("--adapter", type=Path, help="a peft LoRA adapter directory, merged at load")
    p.add_argument("--adapter-registry", type=Path, help="versioned adapter directory (enables hot-swap/rollback)")
    p.add_argument("--name", help="model id clients use (default: the --model value)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--log-dir", type=Path, help="append redacted requests and feedback here (enables /v1/feedback)")
    p.add_argument("--max-batch-size", type=int, default=16)
    p.add_argument("--batch-wait-ms", type=float, default=0.0,
                   help="when idle, wait this long for more requests before starting (default 0: with "
                        "iteration-level batching later requests join at the next step)")
    p.add_argument("--max-queue", type=int, default=64, help="pending requests before answering 429")
    p.add_argument("--log-level", default="warning")
    p.set_defaults(func=run_serve)
