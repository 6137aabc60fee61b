"""Paper-scale `measure` against one float64 symmetric Gram product, side by side.

    python benchmarks/bench_measure.py            # V = 50,257, C = 29,233, d = 1,024
    python benchmarks/bench_measure.py --small    # C = 4,096, d = 256 (a quick look)

Each side runs in a fresh subprocess on the same random means, so timings and peak
memory (ru_maxrss of that process) are comparable. The baseline is NumPy's ``Z @ Z.T``,
which BLAS computes as a symmetric rank-k update (syrk): half the flops of a GEMM.
Multi-threaded OpenBLAS 0.3.31 (NumPy's) segfaults in syrk beyond ~20,000 rows, so for
larger C the baseline is the same product in 2×2 blocks: syrk on the two diagonal
blocks, one GEMM for the off-diagonal block. Same flops, same kernels.
Goal (issue 2): measure ≤ 2× the Gram product's time, peak memory ≤ 2.5 GB.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch


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


def symmetric_gram(z: np.ndarray, block: int = 16384) -> np.ndarray:
    """Z Zᵀ (its blocks on and above the diagonal) by syrk, blocked only where OpenBLAS
    would crash."""
    c = z.shape[0]
    if c <= block:
        return z @ z.T  # NumPy calls syrk for a @ a.T
    half = c // 2
    a, b = z[:half], z[half:]
    return [a @ a.T, a @ b.T.copy(), b @ b.T]  # syrk, GEMM, syrk


def child(side: str, args) -> dict:
    """One side in a fresh process: the Gram product of the centred means, or the whole
    of `measure` as the CLI runs it (load the stats and classifier files, compute)."""
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
        z = stats.means[stats.counts > 0].numpy()
        del stats
        z -= z.mean(0)
        start = time.perf_counter()
        gram = symmetric_gram(z)
        seconds = time.perf_counter() - start
        del gram
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
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB → GiB
    return {"side": side, "seconds": seconds, "peak_gib": peak}


def run_side(side: str, args) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        side,
        "--vocab",
        str(args.vocab),
        "--classes",
        str(args.classes),
        "--dim",
        str(args.dim),
        "--dir",
        args.dir,
    ]
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vocab", type=int, default=50257)
    p.add_argument("--classes", type=int, default=29233)
    p.add_argument("--dim", type=int, default=1024)
    p.add_argument("--small", action="store_true")
    p.add_argument("--child")
    p.add_argument("--dir")
    args = p.parse_args()
    if args.small:
        args.vocab, args.classes, args.dim = 8192, 4096, 256
    if args.child:
        print(json.dumps(child(args.child, args)))
        return
    print(f"V={args.vocab:,} C={args.classes:,} d={args.dim:,}  threads={torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        args.dir = tmp
        run_side("make", args)
        gram = run_side("gram", args)
        ours = run_side("measure", args)
    for r in (gram, ours):
        print(f"  {r['side']:<8} {r['seconds']:8.2f} s   peak RSS {r['peak_gib']:.2f} GiB")
    ratio = ours["seconds"] / gram["seconds"]
    print(f"  measure / Gram = {ratio:.2f}x  (goal ≤ 2.0x; peak goal ≤ 2.5 GiB)")


if __name__ == "__main__":
    main()
