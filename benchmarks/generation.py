"""Generation speed of TinyGPT: KV cache vs no cache, and TinyGPT vs GPT2LMHeadModel.generate, in one run;
and (``--llm``) the LLM interface's batching: ``LLM.complete`` with batch 16 vs one prompt at a time.

    python benchmarks/generation.py            # 6 layers x 384, vocab 4096, 256 new tokens (a few minutes on 2 cores)
    python benchmarks/generation.py --quick    # a small model, a few seconds
    python benchmarks/generation.py --llm      # SmolLM2-135M, 32 chat prompts, batch 16 vs 1 (target >= 3x)

All three decoders run greedy (so they should emit the same tokens: reported) on the same random
weights and the same prompt, batch 1, after a warmup; each number is the median of ``repeats`` runs,
the three decoders taking turns so that a change in machine load hits them alike. Tokens per
CPU-second (this process's CPU time, all threads) is shown too: on a shared machine it is the steadier
number (compare it between runs with the same ``--threads``).
Targets: cache / no cache >= 3x; TinyGPT / transformers >= 1x.
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch
from tqdm.auto import tqdm

from instructlib.nn.gpt import GPTConfig, TinyGPT

DEFAULT = dict(vocab_size=4096, block_size=512, n_layer=6, n_head=6, n_embd=384)
QUICK = dict(vocab_size=512, block_size=128, n_layer=2, n_head=4, n_embd=64)


def _timed(run: Callable[[int], torch.Tensor], new_tokens: int) -> tuple[float, float, torch.Tensor]:
    """(tokens per wall-clock second, tokens per CPU second of this process, output) of ``run(new_tokens)``."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = run(new_tokens)
    return new_tokens / (time.perf_counter() - wall), new_tokens / (time.process_time() - cpu), out


def measure(config: dict | None = None, prompt_len: int = 16, new_tokens: int = 256, repeats: int = 3,
            seed: int = 0, progress: bool = True) -> dict:
    """Tokens/s of TinyGPT with and without its KV cache and of the same weights in transformers.

    Returns a dict with ``cache_tok_s``, ``no_cache_tok_s``, ``hf_tok_s``, ``cache_speedup`` (cache /
    no cache), ``vs_hf`` (TinyGPT cache / transformers), the same five per CPU-second (``cpu_`` prefix),
    ``same_tokens`` (the three greedy outputs agree) and the sizes used.
    """
    config = GPTConfig(**(config or DEFAULT))
    torch.manual_seed(seed)
    model = TinyGPT(config).eval()
    hf = model.to_hf().eval()
    prompt = torch.randint(0, config.vocab_size, (1, prompt_len))

    decoders = {
        "cache": lambda n: model.generate(prompt, n, temperature=0, use_cache=True),
        "no_cache": lambda n: model.generate(prompt, n, temperature=0, use_cache=False),
        "hf": lambda n: hf.generate(prompt, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                    pad_token_id=0),
    }
    runs: dict[str, list[float]] = {name: [] for name in decoders}
    cpu_runs: dict[str, list[float]] = {name: [] for name in decoders}
    outputs = {}
    with torch.inference_mode():
        for run in decoders.values():
            run(8)  # warmup: first-call allocations and dispatch
        for _ in tqdm(range(repeats), desc="repeats", disable=not progress):
            for name, run in decoders.items():  # interleaved, so load changes hit all three alike
                speed, cpu_speed, outputs[name] = _timed(run, new_tokens)
                runs[name].append(speed)
                cpu_runs[name].append(cpu_speed)
    for name, out in outputs.items():
        if out.shape != (1, prompt_len + new_tokens):
            raise AssertionError(f"{name} generated {out.shape[1] - prompt_len} tokens, not {new_tokens}")
    speeds = {name: statistics.median(v) for name, v in runs.items()}
    cpu = {name: statistics.median(v) for name, v in cpu_runs.items()}
    return {
        "same_tokens": all(torch.equal(out, outputs["cache"]) for out in outputs.values()),
        "cache_tok_s": speeds["cache"], "no_cache_tok_s": speeds["no_cache"], "hf_tok_s": speeds["hf"],
        "cache_speedup": speeds["cache"] / speeds["no_cache"], "vs_hf": speeds["cache"] / speeds["hf"],
        "cpu_cache_tok_s": cpu["cache"], "cpu_no_cache_tok_s": cpu["no_cache"], "cpu_hf_tok_s": cpu["hf"],
        "cpu_cache_speedup": cpu["cache"] / cpu["no_cache"], "cpu_vs_hf": cpu["cache"] / cpu["hf"],
        "params": model.num_parameters(), "prompt_len": prompt_len, "new_tokens": new_tokens,
        "repeats": repeats, "threads": torch.get_num_threads(), **{k: getattr(config, k) for k in DEFAULT},
    }


def format_table(r: dict) -> str:
    """The result of ``measure`` as a Markdown table with the two ratios."""
    return "\n".join([
        f"TinyGPT {r['n_layer']} layers x {r['n_embd']}, vocab {r['vocab_size']}, {r['params'] / 1e6:.1f}M "
        f"parameters; batch 1, prompt {r['prompt_len']}, {r['new_tokens']} new tokens, greedy; "
        f"median of {r['repeats']}; {r['threads']} threads",
        "",
        "| decoder | tokens/s (wall clock) | tokens per CPU-second |",
        "|---|---|---|",
        f"| TinyGPT, KV cache | {r['cache_tok_s']:.1f} | {r['cpu_cache_tok_s']:.1f} |",
        f"| TinyGPT, no cache | {r['no_cache_tok_s']:.1f} | {r['cpu_no_cache_tok_s']:.1f} |",
        f"| transformers GPT2LMHeadModel.generate | {r['hf_tok_s']:.1f} | {r['cpu_hf_tok_s']:.1f} |",
        "",
        f"KV cache speedup (cache / no cache): {r['cache_speedup']:.2f}x wall, {r['cpu_cache_speedup']:.2f}x CPU"
        "   (target >= 3x)",
        f"TinyGPT / transformers:              {r['vs_hf']:.2f}x wall, {r['cpu_vs_hf']:.2f}x CPU"
        "   (target >= 1x)",
        f"same greedy tokens from all three:   {r['same_tokens']}",
    ])


def measure_llm(name: str = "smollm2-135m-instruct", n_prompts: int = 32, batch_size: int = 16,
                max_new_tokens: int = 32, repeats: int = 1) -> dict:
    """Prompts/s of ``LLM.chat`` in batches of ``batch_size`` vs one prompt at a time (greedy, same prompts)."""
    from instructlib.data.seeds import load_seed_tasks
    from instructlib.models import load_llm

    llm = load_llm(name)
    tasks = load_seed_tasks()
    convs = [[{"role": "user", "content": (t.instruction + "\n\n" + t.instances[0].input).strip()}]
             for t in tasks[:n_prompts]]
    llm.chat(convs[:2], max_new_tokens=4, progress=False)  # warmup
    times: dict[str, list[float]] = {"batched": [], "single": []}
    outputs: dict[str, list[str]] = {}
    for _ in range(repeats):
        for mode, size in (("batched", batch_size), ("single", 1)):
            start = time.perf_counter()
            outputs[mode] = llm.chat(convs, max_new_tokens=max_new_tokens, batch_size=size, progress=False)
            times[mode].append(time.perf_counter() - start)
    batched, single = min(times["batched"]), min(times["single"])
    same = sum(a == b for a, b in zip(outputs["batched"], outputs["single"]))
    return {"model": name, "prompts": len(convs), "batch_size": batch_size, "max_new_tokens": max_new_tokens,
            "batched_prompts_s": len(convs) / batched, "single_prompts_s": len(convs) / single,
            "ratio": single / batched, "same_outputs": same, "threads": torch.get_num_threads()}


def format_llm_table(r: dict) -> str:
    """The result of ``measure_llm`` as a Markdown table with the ratio."""
    return "\n".join([
        f"LLM.complete on {r['model']}: {r['prompts']} chat prompts, greedy, up to {r['max_new_tokens']} new tokens, "
        f"{r['threads']} threads",
        "",
        "| LLM.complete | prompts/s |",
        "|---|---|",
        f"| batch {r['batch_size']} | {r['batched_prompts_s']:.2f} |",
        "| one prompt at a time | " + f"{r['single_prompts_s']:.2f} |",
        "",
        f"batch {r['batch_size']} / one at a time: {r['ratio']:.2f}x   (target >= 3x)",
        f"same greedy text in both modes: {r['same_outputs']}/{r['prompts']}",
    ])


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a small model and 64 new tokens (overhead-bound: the targets are for the default size)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--llm", action="store_true", help="LLM.complete batch 16 vs one at a time on SmolLM2")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.llm:
        print(f"torch {torch.__version__}")
        print(format_llm_table(measure_llm(repeats=args.repeats)))
        return
    if args.quick:
        result = measure(QUICK, new_tokens=64, repeats=args.repeats)
    else:
        result = measure(repeats=args.repeats)
    print(f"torch {torch.__version__}")
    print(format_table(result))


if __name__ == "__main__":
    main()
