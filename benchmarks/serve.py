"""Chapter 10 benchmark: the same 64 chat requests to `instructlib serve`, one at a time and from 8
concurrent clients, in one run against one server process, as ``--repeat`` pairs (one at a time, then
concurrent; default 3). Prints per pair requests/s, completion tokens/s, p50/p95 latency, the mean
number of sequences per forward pass, CPU milliseconds per request in the server process and in the
client (this process), the throughput ratio and how many answers are identical in both modes, plus
the machine's load average (shared CPUs); then the median ratio over the pairs (target >= 3x).

Two workloads, same model (the chapter's deployed TinyGPT), same 64 user messages (the chapter's
users' requests: the testbed's word families in the users' held-out wordings):

* ``short``: what this chapter's users send: ``max_tokens=16``, answers end at the model's
  end-of-text token after 1-16 tokens ("4", "sun king", "sun, farmer, king").
* ``long``: answers of a realistic chat length for this model: ``max_tokens=64`` with vLLM's
  ``ignore_eos`` extension, so every answer is exactly 64 tokens (about half the 128-position context
  after a ~40-token prompt). Fixed output lengths are how serving benchmarks (vLLM's among them)
  separate the server from what a model happens to say; greedy text past end-of-text is still
  compared between the two modes.

    python benchmarks/serve.py                          # both workloads at the server's default settings, 3 pairs each
    python benchmarks/serve.py --workload short --sweep 0,5,10,30   # the batch-wait trade-off
    python benchmarks/serve.py --model DIR --requests 64 --clients 8
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

WORKLOADS = {"short": dict(max_tokens=16, ignore_eos=False), "long": dict(max_tokens=64, ignore_eos=True)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(client, name: str, messages: list, clients: int, max_tokens: int, ignore_eos: bool):
    """Send every request (``clients`` at a time); return (seconds, latencies, completion tokens, answers)."""
    extra = {"ignore_eos": True} if ignore_eos else None

    def one(m):
        t0 = time.perf_counter()
        out = client.chat.completions.create(model=name, messages=m, max_tokens=max_tokens, temperature=0,
                                             extra_body=extra)
        return time.perf_counter() - t0, out.usage.completion_tokens, out.choices[0].message.content

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(one, messages))
    seconds = time.perf_counter() - start
    return seconds, [r[0] for r in results], sum(r[1] for r in results), [r[2] for r in results]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc; 0.0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def measure(model: str, messages: list, clients: int, workload: str, batch_wait_ms, repeat: int = 1) -> list[dict]:
    """Start one server, warm it up, then ``repeat`` times: one at a time, then concurrent; one dict per pair."""
    import httpx
    import openai

    from instructlib.deploy.server import wait_ready

    settings = WORKLOADS[workload]
    port = free_port()
    cmd = [sys.executable, "-m", "instructlib.cli", "serve", "--model", model, "--name", "bench", "--port", str(port),
           "--max-batch-size", str(clients)]
    if batch_wait_ms is not None:
        cmd += ["--batch-wait-ms", str(batch_wait_ms)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, env={**os.environ})
    base = f"http://127.0.0.1:{port}"
    pairs = []
    try:
        wait_ready(base, timeout=600, proc=proc)
        client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=300)
        run(client, "bench", messages[:4], 1, settings["max_tokens"], settings["ignore_eos"])  # warm-up
        for label, n in [m for _ in range(repeat) for m in (("one at a time", 1), (f"{clients} concurrent clients", clients))]:
            if label == "one at a time":
                rows = {}
                pairs.append(rows)
            before = httpx.get(base + "/stats").json()
            server_cpu, client_cpu = cpu_seconds(proc.pid), time.process_time()
            seconds, latencies, tokens, answers = run(client, "bench", messages, n, **settings)
            server_cpu, client_cpu = cpu_seconds(proc.pid) - server_cpu, time.process_time() - client_cpu
            after = httpx.get(base + "/stats").json()
            passes = max(1, after["batches"] - before["batches"])
            rows[label] = dict(rps=len(messages) / seconds, tps=tokens / seconds, p50=percentile(latencies, 50),
                               p95=percentile(latencies, 95), rows=(after["rows"] - before["rows"]) / passes,
                               tokens=tokens / len(messages), answers=answers,
                               server_ms=1000 * server_cpu / len(messages), client_ms=1000 * client_cpu / len(messages))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    return pairs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model name or directory (default: the chapter's deployed TinyGPT)")
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workload", choices=["short", "long", "both"], default="both")
    parser.add_argument("--repeat", type=int, default=3, help="pairs (one at a time, then concurrent) per server; "
                                                               "the machine's load varies, so the median ratio is reported")
    parser.add_argument("--sweep", help="comma-separated --batch-wait-ms values to compare (default: the "
                                        "server's default only)")
    args = parser.parse_args()

    from instructlib.data.formats import user_content
    from instructlib.data.wordings import worded_examples
    from instructlib.deploy.online_round import split_heldout
    from instructlib.generate.wording_experiment import TESTBED_FAMILIES

    model = args.model
    if model is None:
        from instructlib.deploy.model import deployed_model_dir

        model = str(deployed_model_dir())
    users = split_heldout(TESTBED_FAMILIES).users  # the chapter's users' requests, on test inputs
    examples = worded_examples("test", -(-args.requests // len(users)), users, seed=0)[:args.requests]
    messages = [[{"role": "user", "content": user_content(e.record)}] for e in examples]
    waits = [float(w) for w in args.sweep.split(",")] if args.sweep else [None]
    workloads = ["short", "long"] if args.workload == "both" else [args.workload]

    print(f"model {Path(model).name}, {len(messages)} chat requests, greedy, {args.clients} clients; torch threads "
          f"per server: {os.environ.get('OMP_NUM_THREADS', 'default')}; load average before: "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    header = (f"{'workload':<9}{'wait ms':>8} {'mode':<22}{'req/s':>7}{'tok/s':>8}{'tok/ans':>8}{'p50 s':>7}"
              f"{'p95 s':>7}{'rows/pass':>10}{'server CPU ms/req':>18}{'client CPU ms/req':>18}")
    print(header)
    for workload in workloads:
        for wait in waits:
            label = "default" if wait is None else f"{wait:g}"
            ratios = []
            for rows in measure(model, messages, args.clients, workload, wait, args.repeat):
                for mode, r in rows.items():
                    print(f"{workload:<9}{label:>8} {mode:<22}{r['rps']:>7.2f}{r['tps']:>8.1f}{r['tokens']:>8.1f}"
                          f"{r['p50']:>7.3f}{r['p95']:>7.3f}{r['rows']:>10.2f}{r['server_ms']:>18.1f}"
                          f"{r['client_ms']:>18.1f}")
                seq, con = rows["one at a time"], rows[f"{args.clients} concurrent clients"]
                same = sum(a == b for a, b in zip(seq["answers"], con["answers"]))
                ratios.append(con["rps"] / seq["rps"])
                print(f"{'':<18}ratio {ratios[-1]:.2f}x; identical answers {same}/{len(messages)}; "
                      f"load average now {os.getloadavg()[0]:.1f}", flush=True)
            print(f"{workload} (batch wait {label}): median ratio {statistics.median(ratios):.2f}x over {len(ratios)} "
                  f"pairs (range {min(ratios):.2f}x-{max(ratios):.2f}x; target >= 3x)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
