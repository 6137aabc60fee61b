"""``lingcollapse data prepare`` on the embedded corpus, as a whole process.

    python benchmarks/bench_data_prepare.py                      # 5 M tokens, T = 256
    python benchmarks/bench_data_prepare.py --tokens 1000000 --repeats 3

Goal (issue 3): generating, tokenizing and packing 5 M tokens takes ≤ 60 s on a 2-core
machine. The wall time is that of the whole command (interpreter start and imports
included) in a fresh temporary dir; the stages are timed inside it: generate (the story
generator), tokenizer (BPE training and saving), tokenize (Rust batch encoding) and
pack (chunking, label counts, writing the .npy files).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL_S = 60.0


def run_once(tokens: int, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "data"
        cmd = [
            sys.executable,
            "-m",
            "lingcollapse",
            "data",
            "prepare",
            "--corpus",
            "embedded",
            "--tokens",
            str(tokens),
            "--out",
            str(out),
            "--json",
            *extra,
        ]
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            sys.exit(f"data prepare failed ({done.returncode}): {done.stderr.strip()}")
        result = json.loads(done.stdout)
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {"wall_s": wall, "bytes": size, **result}


def report(runs: list[dict]) -> dict:
    best = min(runs, key=lambda r: r["wall_s"])
    meta, times = best["meta"], best["timings_s"]
    tokens = sum(s["tokens"] for s in meta["splits"].values())
    print(f"cores: {os.cpu_count()}; runs: {len(runs)} (best shown)")
    print(
        f"tokens: {tokens:,} (train N = {meta['N']:,}, S = {meta['S']:,}, T = {meta['seq_len']}, "
        f"V = {meta['vocab_size']:,}, C = {meta['C']:,}); data dir {best['bytes'] / 2**20:.1f} MiB"
    )
    print(f"{'stage':<12}{'seconds':>9}")
    for stage, seconds in times.items():
        print(f"{stage:<12}{seconds:>9.2f}")
    inside = sum(times.values())
    print(f"{'other':<12}{best['wall_s'] - inside:>9.2f}   (start-up, imports, writing meta)")
    print(
        f"{'wall':<12}{best['wall_s']:>9.2f}   goal ≤ {GOAL_S:.0f} s: "
        f"{'met' if best['wall_s'] <= GOAL_S else 'MISSED'}"
    )
    print(f"throughput: {tokens / best['wall_s'] / 1e6:.2f} M tokens/s (whole command)")
    walls = ", ".join(f"{r['wall_s']:.2f}" for r in runs)
    print(f"all walls: {walls} s")
    return best


def _record(best: dict) -> None:
    from results import record

    stages = ", ".join(f"{k} {v:.2f}" for k, v in best["timings_s"].items())
    row = {
        "what": "data preparation, 5 M tokens of the built-in corpus (whole command)",
        "result": f"**{best['wall_s']:.1f} s** ({stages})",
        "goal": f"≤ {GOAL_S:.0f} s",
    }
    record("data_prepare", row, {"wall_s": best["wall_s"], "timings_s": best["timings_s"]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=5_000_000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("extra", nargs="*", help="more `data prepare` options, after --")
    args = parser.parse_args()
    best = report([run_once(args.tokens, args.extra) for _ in range(args.repeats)])
    if args.tokens == 5_000_000 and not args.extra:  # the README's configuration
        _record(best)


if __name__ == "__main__":
    main()
