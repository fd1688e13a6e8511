"""Chapter 10 benchmark: the same 64 chat requests to `instructlib serve`, one at a time and from 8
concurrent clients, in one run against one server process. Prints requests/s, completion tokens/s,
p50/p95 latency, the mean batch the server formed, and the throughput ratio (target >= 3x).

    python benchmarks/serve.py                       # the chapter's deployed TinyGPT (built on first use)
    python benchmarks/serve.py --model DIR --requests 64 --clients 8 --max-tokens 16
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(client, name: str, messages: list, clients: int, max_tokens: int):
    """Send every request (``clients`` at a time); return (seconds, latencies, completion tokens, answers)."""
    def one(m):
        t0 = time.perf_counter()
        out = client.chat.completions.create(model=name, messages=m, max_tokens=max_tokens, temperature=0)
        return time.perf_counter() - t0, out.usage.completion_tokens, out.choices[0].message.content

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(one, messages))
    seconds = time.perf_counter() - start
    return seconds, [r[0] for r in results], sum(r[1] for r in results), [r[2] for r in results]


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model name or directory (default: the chapter's deployed TinyGPT)")
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--batch-wait-ms", type=float, default=10.0, help="the server's --batch-wait-ms")
    args = parser.parse_args()

    import httpx
    import openai

    from instructlib.data.formats import user_content
    from instructlib.deploy.server import wait_ready
    from instructlib.data.verifiable import make_examples

    model = args.model
    if model is None:
        from instructlib.deploy.model import deployed_model_dir

        model = str(deployed_model_dir())
    examples = make_examples("test", -(-args.requests // 13), seed=0)[:args.requests]
    messages = [[{"role": "user", "content": user_content(e.record)}] for e in examples]
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "instructlib.cli", "serve", "--model", model, "--name", "bench",
                             "--port", str(port), "--max-batch-size", str(args.clients),
                             "--batch-wait-ms", str(args.batch_wait_ms)],
                            stdout=subprocess.DEVNULL, env={**os.environ})
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, timeout=600, proc=proc)
        client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=300)
        run(client, "bench", messages[:4], 1, args.max_tokens)  # warm-up
        rows = {}
        for label, clients in (("one at a time", 1), (f"{args.clients} concurrent clients", args.clients)):
            before = httpx.get(base + "/stats").json()
            seconds, latencies, tokens, answers = run(client, "bench", messages, clients, args.max_tokens)
            after = httpx.get(base + "/stats").json()
            batches = after["batches"] - before["batches"]
            rows[label] = dict(rps=len(messages) / seconds, tps=tokens / seconds, p50=percentile(latencies, 50),
                               p95=percentile(latencies, 95), batch=(after["requests"] - before["requests"]) / batches,
                               answers=answers)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)

    print(f"model {Path(model).name}, {len(messages)} chat requests, max_tokens={args.max_tokens}, greedy, "
          f"batch wait {args.batch_wait_ms:g} ms; "
          f"torch threads per server: {os.environ.get('OMP_NUM_THREADS', 'default')}")
    print(f"{'':<24}{'requests/s':>11}{'tokens/s':>10}{'p50 s':>8}{'p95 s':>8}{'mean batch':>12}")
    for label, r in rows.items():
        print(f"{label:<24}{r['rps']:>11.2f}{r['tps']:>10.1f}{r['p50']:>8.3f}{r['p95']:>8.3f}{r['batch']:>12.2f}")
    seq, con = rows["one at a time"], rows[f"{args.clients} concurrent clients"]
    same = sum(a == b for a, b in zip(seq["answers"], con["answers"]))
    print(f"throughput ratio (concurrent / one at a time): {con['rps'] / seq['rps']:.2f}x (target >= 3x); "
          f"identical answers in both modes: {same}/{len(messages)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
