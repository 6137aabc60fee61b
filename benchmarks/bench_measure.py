"""Paper-scale `measure` against the float64 symmetric Gram product it computes, side by side.

    python benchmarks/bench_measure.py               # V = 50,257, C = 29,233, d = 1,024
    python benchmarks/bench_measure.py --repeat 3    # each side 3 times, the fastest kept
    python benchmarks/bench_measure.py --small       # C = 4,096, d = 256 (a quick look)

The baseline is the product `measure`'s pairwise pass makes and nothing else: the tiles
``Z[I] Z[J]ᵀ`` (J ≥ I) of the Gram matrix of the centred means, C²·d flops in float64,
in torch (the same BLAS and the same threads as `measure`), with the pass's tile size,
each tile into one reused buffer. Each side runs in a fresh subprocess on the same
random means, so timings and peak memory (ru_maxrss of that process) are comparable;
with ``--repeat`` the sides alternate and each keeps its fastest run. The `measure` side
is the whole of `measure` as the CLI runs it (every metric, the covariance and the
classifier included), after its files are loaded.
Goal (issue 2): measure ≤ 2× the Gram product's time, peak memory ≤ 2.5 GB.
At the paper's scale (not with --small) the results go to benchmarks/results/measure.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

PAPER = {"vocab": 50257, "classes": 29233, "dim": 1024}
SMALL = {"vocab": 8192, "classes": 4096, "dim": 256}
GOAL_RATIO, GOAL_PEAK_GB = 2.0, 2.5


def make_stats(vocab: int, classes: int, dim: int, seed: int = 0):
    from lingcollapse.stats import ClassStats

    g = torch.Generator().manual_seed(seed)
    counts = torch.zeros(vocab, dtype=torch.long)
    kept = torch.randperm(vocab, generator=g)[:classes]
    counts[kept] = torch.randint(1, 1000, (classes,), generator=g)
    means = torch.zeros(vocab, dim, dtype=torch.float64)
    means[kept] = torch.randn(classes, dim, generator=g, dtype=torch.float64)
    m2 = counts.double() * torch.rand(vocab, generator=g, dtype=torch.float64)
    cov = torch.eye(dim, dtype=torch.float64) * counts.sum()
    return ClassStats(counts, means, m2, cov), torch.randn(vocab, dim, generator=g)


def symmetric_gram(z: torch.Tensor, tile: int) -> None:
    """The tiles Z[I] Z[J]ᵀ with J ≥ I of Z Zᵀ (C²·d flops, half of the full product's),
    each into one reused (tile, tile) buffer, as the pairwise pass makes them."""
    c = z.shape[0]
    out = torch.empty(tile * tile, dtype=z.dtype)
    for i0 in range(0, c, tile):
        rows = z[i0 : i0 + tile]
        for j0 in range(i0, c, tile):
            cols = z[j0 : j0 + tile]
            torch.mm(rows, cols.T, out=out[: len(rows) * len(cols)].view(len(rows), len(cols)))


def child(side: str, args) -> dict:
    """One side in a fresh process: the Gram product of the centred means, or the whole
    of `measure` as the CLI runs it (load the stats and classifier files, compute)."""
    from lingcollapse.metrics.pairwise import DEFAULT_TILE
    from lingcollapse.stats.files import load_stats

    if side == "make":
        from safetensors.torch import save_file

        from lingcollapse.stats.files import save_stats

        stats, weight = make_stats(args.vocab, args.classes, args.dim)
        save_stats(f"{args.dir}/train.safetensors", stats)
        save_file({"weight": weight}, f"{args.dir}/classifier.safetensors")
        return {}
    if side == "gram":
        stats = load_stats(f"{args.dir}/train.safetensors")
        z = stats.means[stats.counts > 0]  # (C, d) float64
        del stats
        z -= z.mean(0)
        start = time.perf_counter()
        symmetric_gram(z, DEFAULT_TILE)
        seconds = time.perf_counter() - start
    else:
        from lingcollapse.metrics import measure
        from lingcollapse.metrics.classifier import load_classifier

        start = time.perf_counter()
        stats = load_stats(f"{args.dir}/train.safetensors")
        classifier = load_classifier(f"{args.dir}/classifier.safetensors")
        loaded = time.perf_counter()
        result = measure(stats, classifier=classifier)
        seconds = time.perf_counter() - loaded
        print(f"    (loading the files took {loaded - start:.2f} s)", file=sys.stderr)
        assert result.metrics["n_classes"] == args.classes
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return {
        "side": side,
        "seconds": seconds,
        "peak_bytes": peak,
        "threads": torch.get_num_threads(),
        "tile": DEFAULT_TILE,
    }


def run_side(side: str, args) -> dict:
    cmd = [sys.executable, __file__, "--child", side, "--dir", args.dir]
    cmd += ["--vocab", str(args.vocab), "--classes", str(args.classes), "--dim", str(args.dim)]
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def report(runs: dict[str, list[dict]], args) -> dict:
    """Print the table (↓: lower is better) and return every number measured."""
    best = {side: min(found, key=lambda r: r["seconds"]) for side, found in runs.items()}
    gram, ours = best["gram"], best["measure"]
    ratio = ours["seconds"] / gram["seconds"]
    print(f"  {'side':<40} {'time ↓':>9} {'peak RSS ↓':>11}")
    label = {"gram": "float64 symmetric Gram (torch, tiled)", "measure": "measure (every metric)"}
    for side, r in best.items():
        times = ", ".join(f"{x['seconds']:.2f}" for x in runs[side])
        print(
            f"  {label[side]:<40} {r['seconds']:7.2f} s {r['peak_bytes'] / 1e9:8.2f} GB"
            + (f"   (runs: {times} s)" if len(runs[side]) > 1 else "")
        )
    print(
        f"  measure / Gram = {ratio:.2f}x  (goal ≤ {GOAL_RATIO:.1f}x; "
        f"peak goal ≤ {GOAL_PEAK_GB} GB)  threads={gram['threads']}  tile={gram['tile']}"
    )
    return {
        "vocab": args.vocab,
        "classes": args.classes,
        "dim": args.dim,
        "threads": gram["threads"],
        "tile": gram["tile"],
        "gram_seconds": gram["seconds"],
        "measure_seconds": ours["seconds"],
        "ratio": ratio,
        "gram_peak_bytes": gram["peak_bytes"],
        "measure_peak_bytes": ours["peak_bytes"],
        "runs": runs,
    }


def record_results(results: dict) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from results import record

    row = {
        "what": "`measure` (every metric, from loaded stats and classifier) vs the float64 "
        "symmetric Gram product of its centred means in torch (tiles J ≥ I, same threads), "
        f"V = {results['vocab']:,}, C = {results['classes']:,}, d = {results['dim']:,}, "
        "fresh processes",
        "result": f"**{results['ratio']:.2f}×** ({results['measure_seconds']:.1f} s vs "
        f"{results['gram_seconds']:.1f} s, {results['threads']} threads) · peak "
        f"**{results['measure_peak_bytes'] / 1e9:.2f} GB**",
        "goal": f"≤ {GOAL_RATIO:.0f}× · ≤ {GOAL_PEAK_GB} GB",
    }
    print(f"  wrote {record('measure', row, results)}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, value in PAPER.items():
        p.add_argument(f"--{name}", type=int, default=value)
    p.add_argument("--small", action="store_true", help="C = 4,096, d = 256; nothing recorded")
    p.add_argument("--repeat", type=int, default=1, help="runs per side; the fastest is kept")
    p.add_argument("--child")
    p.add_argument("--dir")
    args = p.parse_args()
    if args.small:
        vars(args).update(SMALL)
    if args.child:
        print(json.dumps(child(args.child, args)))
        return
    print(f"V={args.vocab:,} C={args.classes:,} d={args.dim:,}  threads={torch.get_num_threads()}")
    runs = {"gram": [], "measure": []}
    with tempfile.TemporaryDirectory() as tmp:
        args.dir = tmp
        run_side("make", args)
        for _ in range(args.repeat):
            for side, found in runs.items():
                found.append(run_side(side, args))
    results = report(runs, args)
    if not args.small and all(vars(args)[k] == v for k, v in PAPER.items()):
        record_results(results)


if __name__ == "__main__":
    main()
