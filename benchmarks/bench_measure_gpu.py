"""Exact `measure` at LLM scale on one GPU against the float64 Gram product it computes.

    python benchmarks/bench_measure_gpu.py            # V = C = 131,072, d = 4,096 on CUDA
    python benchmarks/bench_measure_gpu.py --small    # C = 16,384, d = 1,024 (a quick look)
    python benchmarks/bench_measure_gpu.py --device cpu --small   # a dry run without a GPU

Without CUDA it says "no CUDA device: nothing measured", writes nothing and exits 0
(``--device cpu`` runs the same steps on the CPU instead, to check the script).

The baseline is the product `measure`'s pairwise pass makes and nothing else: the tiles
``Z[I] Z[J]ᵀ`` (J ≥ I) of the Gram matrix of the centred means, C²·d flops in float64,
on the same device, with the same tile (the one `measure` picks there:
:func:`~lingcollapse.metrics.compute.fit_tile`, or ``--tile``), each tile into one reused
buffer. The sides run in one process (a GPU's timings do not depend on the process's
heap, and making or loading the 6.4 GB of stats and classifier once is most of the run),
each run ``--repeat`` times in turn, the fastest kept, every clock read after a CUDA
synchronize:

- ``gram``: the baseline above, Z already on the device;
- ``pass``: the exact pairwise pass alone (``pairwise_metrics``) on the same Z, with the
  time it estimated for itself after its first tiles;
- ``measure``: the whole of `measure` as the CLI runs it once its files are loaded
  (every metric, the covariance and the classifier included) from stats and classifier
  in host memory: moving the rows to the GPU is part of its time;
- ``geometry``: one part of that, apart: Z made from the stats in host memory (the rows
  gathered, moved to the device in chunks and centred, as `measure` does).

Then the GPU's results are checked against the CPU's (``--check-classes`` classes, every
metric and per-class value to 1e-9 relative; the GPU's tile against the CPU's 1,024).
Goal (issue 15): measure ≤ 2× the Gram product's time, the CPU's results to 1e-9. Only
a CUDA run at the default size writes benchmarks/results/measure_gpu.json. Nothing is
read from the network: the statistics are random (seeded), made in memory.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_measure import make_stats  # the CPU benchmark's random stats

LLM = {"vocab": 131072, "classes": 131072, "dim": 4096}
SMALL = {"vocab": 16384, "classes": 16384, "dim": 1024}
CHECK_CLASSES = 16384
GOAL_RATIO, GOAL_RTOL = 2.0, 1e-9


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(on: torch.device, work, *args, **kwargs):
    """(seconds, result, peak GPU bytes above what was allocated before) of one call."""
    cuda = on.type == "cuda"
    sync(on)
    before = torch.cuda.memory_allocated(on) if cuda else 0
    if cuda:
        torch.cuda.reset_peak_memory_stats(on)
    start = time.perf_counter()
    result = work(*args, **kwargs)
    sync(on)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(on) - before if cuda else None  # CPU: not here
    return seconds, result, peak


def symmetric_gram(z: torch.Tensor, tile: int) -> None:
    """The tiles Z[I] Z[J]ᵀ with J ≥ I of Z Zᵀ (C²·d flops, half of the full product's),
    each into one reused (tile, tile) buffer on Z's device, as the pairwise pass makes them."""
    c = z.shape[0]
    out = torch.empty(tile * tile, dtype=z.dtype, device=z.device)
    for i0 in range(0, c, tile):
        rows = z[i0 : i0 + tile]
        for j0 in range(i0, c, tile):
            cols = z[j0 : j0 + tile]
            torch.mm(rows, cols.T, out=out[: len(rows) * len(cols)].view(len(rows), len(cols)))


def centred(stats, device: torch.device):
    """Z (C, d) and σ² (C,) on the device, as `measure` makes them (its own functions)."""
    from lingcollapse.metrics import Convention
    from lingcollapse.metrics.compute import geometry

    g = geometry(stats, Convention(), device)
    return g.z, g.sigma2


def subset(stats, classes: int):
    """The same stats with only their first ``classes`` kept classes counted."""
    from lingcollapse.stats import ClassStats

    counts = stats.counts.clone()
    counts[counts.nonzero().squeeze(1)[classes:]] = 0
    return ClassStats(counts, stats.means, stats.m2, stats.cov_m2)


def check(stats, classifier, device: torch.device, classes: int) -> dict:
    """The device's `measure` (its own tile; a dry run on the CPU takes the GPU's) against
    the CPU's with tiles of 1,024 on ``classes`` classes: the largest relative difference
    over every metric, and over every per-class value (relative to its column's largest)."""
    from lingcollapse.metrics import measure
    from lingcollapse.metrics.pairwise import GPU_TILE

    small = subset(stats, classes)
    tile = None if device.type == "cuda" else GPU_TILE
    got = measure(small, classifier=classifier, device=device, tile=tile)
    want = measure(small, classifier=classifier, device="cpu", tile=1024)
    worst, worst_key = 0.0, ""
    for key, value in want.metrics.items():
        if isinstance(value, float) and math.isfinite(value):
            diff = abs(got.metrics[key] - value) / max(abs(value), 1e-300)
        else:
            diff = 0.0 if got.metrics[key] == value else math.inf
        if diff > worst:
            worst, worst_key = diff, key
    for column in ("cdnv_mean", "interference_mean", "logkernel_mean", "duality_cos", "dot"):
        a, b = got.classes[column].to_numpy(), want.classes[column].to_numpy()
        diff = float(abs(a - b).max() / abs(b).max())
        if diff > worst:
            worst, worst_key = diff, column
    return {"classes": classes, "max_rel_diff": worst, "worst": worst_key}


def run(args, device: torch.device) -> dict:
    from lingcollapse import memory
    from lingcollapse.metrics import measure, pairwise_metrics
    from lingcollapse.metrics.compute import fit_tile

    print(f"making the stats: V={args.vocab:,} C={args.classes:,} d={args.dim:,}", flush=True)
    stats, weight = make_stats(args.vocab, args.classes, args.dim)
    classifier = (weight, None)
    warm = subset(stats, min(args.classes, 2048))  # CUDA context, cuBLAS, cuSOLVER, kernels
    measure(warm, classifier=classifier, device=device)
    z, sigma2 = centred(stats, device)
    tile = args.tile or fit_tile(None, args.classes, device)  # as measure picks it, Z held
    del z, sigma2
    runs: dict[str, list[dict]] = {"gram": [], "pass": [], "measure": [], "geometry": []}
    for _ in range(args.repeat):
        seconds, _, peak = timed(
            device, measure, stats, classifier=classifier, device=device, tile=tile
        )
        runs["measure"].append({"seconds": seconds, "peak_bytes": peak})
        seconds, (z, sigma2), peak = timed(device, centred, stats, device)
        runs["geometry"].append({"seconds": seconds, "peak_bytes": peak})
        seconds, _, peak = timed(device, symmetric_gram, z, tile)
        runs["gram"].append({"seconds": seconds, "peak_bytes": peak})
        seconds, result, peak = timed(device, pairwise_metrics, z, sigma2, 2.0, tile)
        runs["pass"].append(
            {"seconds": seconds, "peak_bytes": peak, "estimate_seconds": result.seconds_estimate}
        )
        del z, sigma2, result
    print(f"checking against the CPU on {min(args.check_classes, args.classes):,} classes")
    checked = check(stats, classifier, device, min(args.check_classes, args.classes))
    bound = memory.measure_device_bytes(args.classes, args.dim, tile, True, True)
    return {"tile": tile, "runs": runs, "check": checked, "device_bytes_bound": bound}


def report(found: dict, args, device: torch.device) -> dict:
    """Print the table (↓: lower is better) and return every number measured."""
    best = {side: min(r, key=lambda x: x["seconds"]) for side, r in found["runs"].items()}
    gram = best["gram"]["seconds"]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"  {'side':<46} {'time ↓':>9} {'peak ↓':>10}   on {name}, tile {found['tile']:,}")
    label = {
        "gram": "float64 symmetric Gram (torch, tiled)",
        "pass": "exact pairwise pass alone",
        "measure": "measure (every metric, rows moved in)",
        "geometry": "  of which: Z made from the stats on the host",
    }
    for side, r in best.items():
        times = ", ".join(f"{x['seconds']:.2f}" for x in found["runs"][side])
        peak = "-" if r["peak_bytes"] is None else f"{r['peak_bytes'] / 1e9:.2f} GB"
        print(
            f"  {label[side]:<46} {r['seconds']:7.2f} s {peak:>10}"
            f"   ({r['seconds'] / gram:.2f}x; runs: {times} s)"
        )
    estimate = best["pass"]["estimate_seconds"]
    said = "none (one tile)" if estimate is None else f"{estimate:.2f} s"
    print(f"  the pass's own estimate of its time: {said}")
    checked = found["check"]
    peak = best["measure"]["peak_bytes"]
    peak = "-" if peak is None else f"{peak / 1e9:.2f} GB"
    print(
        f"  measure / Gram = {best['measure']['seconds'] / gram:.2f}x (goal ≤ {GOAL_RATIO:.0f}x); "
        f"vs the CPU on {checked['classes']:,} classes: max rel. diff "
        f"{checked['max_rel_diff']:.1e} ({checked['worst'] or '-'}; goal ≤ {GOAL_RTOL:g}); "
        f"device peak {peak} (bound {found['device_bytes_bound'] / 1e9:.2f} GB)"
    )
    return {
        "vocab": args.vocab,
        "classes": args.classes,
        "dim": args.dim,
        "device": name,
        "tile": found["tile"],
        "gram_seconds": gram,
        "pass_seconds": best["pass"]["seconds"],
        "geometry_seconds": best["geometry"]["seconds"],
        "measure_seconds": best["measure"]["seconds"],
        "ratio": best["measure"]["seconds"] / gram,
        "pass_ratio": best["pass"]["seconds"] / gram,
        "pass_estimate_seconds": estimate,
        "measure_peak_bytes": best["measure"]["peak_bytes"],
        "device_bytes_bound": found["device_bytes_bound"],
        "check": checked,
        "runs": found["runs"],
    }


def record_results(results: dict) -> None:
    from results import record

    checked = results["check"]
    row = {
        "what": "exact `measure` on one GPU (every metric, from stats and classifier in host "
        "memory) vs the float64 symmetric Gram product of its centred means on that GPU "
        f"(tiles J ≥ I of {results['tile']:,}), V = {results['vocab']:,}, "
        f"C = {results['classes']:,}, d = {results['dim']:,}; its results vs the CPU's",
        "result": f"**{results['ratio']:.2f}×** ({results['measure_seconds']:.1f} s vs "
        f"{results['gram_seconds']:.1f} s, the pass alone {results['pass_ratio']:.2f}×, "
        f"{results['device']}) · CPU's results to **{checked['max_rel_diff']:.0e}** "
        f"(C = {checked['classes']:,})",
        "goal": f"≤ {GOAL_RATIO:.0f}× · ≤ {GOAL_RTOL:g}",
    }
    print(f"  wrote {record('measure_gpu', row, results)}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, value in LLM.items():
        p.add_argument(f"--{name}", type=int, default=value)
    p.add_argument("--small", action="store_true", help="C = 16,384, d = 1,024; nothing recorded")
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu (a dry run)")
    p.add_argument("--tile", type=int, help="tile of both sides (default: measure's own)")
    p.add_argument("--repeat", type=int, default=2, help="runs per side; the fastest is kept")
    p.add_argument(
        "--check-classes",
        type=int,
        default=CHECK_CLASSES,
        help=f"classes of the CPU comparison (default {CHECK_CLASSES:,})",
    )
    args = p.parse_args()
    for name, value in SMALL.items() if args.small else ():
        if getattr(args, name) == LLM[name]:  # a size given with --small wins
            setattr(args, name, value)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: nothing measured")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    print(f"V={args.vocab:,} C={args.classes:,} d={args.dim:,} on {device}", flush=True)
    results = report(run(args, device), args, device)
    full = not args.small and all(vars(args)[k] == v for k, v in LLM.items())
    if device.type == "cuda" and full:
        record_results(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
