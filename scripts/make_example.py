"""Make the small bundled example of `lingcollapse measure` (src/lingcollapse/examples/).

A seeded stand-in for a collected model until `collect` exists: 512 token classes with
Zipf-distributed counts, 32-dim embeddings drawn around class means that lean towards
their classifier rows, streamed through the real accumulators. Re-running it writes
byte-identical files.

    python scripts/make_example.py
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from lingcollapse.stats import ClassAccumulator
from lingcollapse.stats.files import save_stats
from lingcollapse.stats.validation import ValidationAccumulator

OUT = Path(__file__).resolve().parent.parent / "src" / "lingcollapse" / "examples"
VOCAB, DIM, TRAIN, VALID = 512, 32, 200_000, 20_000


def sample(g, n, means, zipf):
    y = torch.multinomial(zipf, n, replacement=True, generator=g)
    h = means[y] + 0.8 * torch.randn(n, DIM, generator=g)
    return h, y


def main() -> None:
    g = torch.Generator().manual_seed(2024)
    weight = torch.randn(VOCAB, DIM, generator=g) / DIM**0.5
    means = 2.0 * weight + 0.6 * torch.randn(VOCAB, DIM, generator=g) / DIM**0.5 + 0.5
    zipf = 1.0 / torch.arange(1, VOCAB + 1, dtype=torch.float64) ** 1.1
    train = ClassAccumulator(VOCAB, DIM, covariance=True)
    for _ in range(TRAIN // 10_000):
        train.update(*sample(g, 10_000, means, zipf))
    stats = train.compute()
    val = ValidationAccumulator(weight, None, stats)
    for _ in range(VALID // 10_000):
        val.update(*sample(g, 10_000, means, zipf))
    OUT.mkdir(parents=True, exist_ok=True)
    meta = {"model": "synthetic-example", "data": "synthetic Gaussian classes", "layer": "last"}
    save_stats(OUT / "train.safetensors", stats, **meta, tokens=TRAIN)
    save_stats(OUT / "validation.safetensors", val.state, **meta, tokens=VALID)
    save_file({"weight": weight.contiguous()}, OUT / "classifier.safetensors")
    print(f"wrote the example to {OUT}")


if __name__ == "__main__":
    main()
