"""Accumulation throughput into a 50,257-class accumulator (steady state).

    python benchmarks/bench_accumulate.py

Embeddings of a batch of next-token labels drawn from a Zipf law (as tokens are) are
streamed into :class:`ClassAccumulator` after every class has been seen once, the
regime of a long collection pass. Beside it, in the same process, the floor of any
exact float64 method: converting the batch to float64 and one ``index_add_`` of it.
Goals (issue 2, this 2-core CPU): ≥ 10 M embeddings/s at d = 64, ≥ 1 M/s at d = 1,024.
"""

from __future__ import annotations

import time

import torch

from lingcollapse.stats import ClassAccumulator

VOCAB = 50257


def batches(n: int, d: int, count: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    zipf = 1.0 / torch.arange(1, VOCAB + 1, dtype=torch.float64)
    return [
        (torch.randn(n, d, generator=g), torch.multinomial(zipf, n, replacement=True, generator=g))
        for _ in range(count)
    ]


def rate(fn, data, repeats: int) -> float:
    fn(*data[0])  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        for h, y in data:
            fn(h, y)
    seconds = time.perf_counter() - start
    return repeats * sum(len(y) for _, y in data) / seconds


def main() -> None:
    print(f"V={VOCAB:,}  threads={torch.get_num_threads()}")
    found = {}
    for d, n in ((64, 65536), (1024, 16384)):
        data = batches(n, d, 4)
        acc = ClassAccumulator(VOCAB, d)
        acc.update(torch.randn(VOCAB, d), torch.arange(VOCAB))  # every class seen once
        ours = rate(acc.update, data, repeats=3)
        sums = torch.zeros(VOCAB, d, dtype=torch.float64)
        floor = rate(lambda h, y, s=sums: s.index_add_(0, y, h.double()), data, repeats=3)
        goal = 10e6 if d == 64 else 1e6
        print(
            f"  d={d:<5} ClassAccumulator {ours / 1e6:6.2f} M/s   (goal ≥ {goal / 1e6:.0f} M/s)"
            f"   floor: to-float64 + index_add_ {floor / 1e6:6.2f} M/s"
        )
        found[d] = {"per_s": ours, "floor_per_s": floor, "batch": n}
    from results import record

    row = {
        "what": f"accumulation into {VOCAB:,} classes (steady state), beside the floor of "
        "any exact float64 method (to float64 + one `index_add_`, same process)",
        "result": f"**{found[64]['per_s'] / 1e6:.1f} M/s** at d = 64 (floor "
        f"{found[64]['floor_per_s'] / 1e6:.1f}), **{found[1024]['per_s'] / 1e6:.2f} M/s** at "
        f"d = 1,024 (floor {found[1024]['floor_per_s'] / 1e6:.2f})",
        "goal": "≥ 10 M/s, ≥ 1 M/s",
    }
    record("accumulate", row, {str(d): r for d, r in found.items()})


if __name__ == "__main__":
    main()
