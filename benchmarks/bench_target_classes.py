"""What finding a shard's classes costs before a train pass, beside what the pass costs.

    python benchmarks/bench_target_classes.py [--tokens 50000000]

``collect`` keeps train statistics for the classes the data holds as targets
(:func:`lingcollapse.collect.passes.target_classes`, one streaming ``np.bincount`` over the
memory-mapped split). On a split of Llama-3's vocabulary (V = 128,256, Zipf-distributed
ids, T = 2,048; 50 M tokens by default, in the page cache, as ``collect`` leaves it after
checking the split) this times, in one process: that count; what every ``collect``
already spends opening the split (its SHA-256 and the id range check); and, as the
cheapest pass there is, the forward pass and statistics update of a one-block, 64-wide
model on this CPU per token, extrapolated to the split. How many classes a corpus holds
is the corpus's (a Zipf law over all of V reaches nearly every id; TinyStories holds
29,233 of GPT-Neo's 50,257): the count costs the same whatever it finds.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lingcollapse.collect.accumulate import add_batch, train_accumulators
from lingcollapse.collect.data import _check_ids
from lingcollapse.collect.model import embedding_model
from lingcollapse.collect.passes import target_classes
from lingcollapse.io import file_sha256
from lingcollapse.models.registry import build

VOCAB, SEQ_LEN = 128_256, 2048


def make_split(path: Path, tokens: int, seed: int = 0) -> np.ndarray:
    """A ``[S, T]`` int32 split of Zipf-distributed ids (as tokens are), memory-mapped."""
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(1.0 / np.arange(1, VOCAB + 1))
    cdf /= cdf[-1]
    rows = tokens // SEQ_LEN
    out = np.lib.format.open_memmap(path, "w+", np.int32, (rows, SEQ_LEN))
    for start in range(0, rows, 1024):  # in blocks: never the whole split as int64
        stop = min(start + 1024, rows)
        out[start:stop] = np.searchsorted(cdf, rng.random((stop - start, SEQ_LEN)))
    out.flush()
    return np.load(path, mmap_mode="r")


def best(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def pass_seconds_per_token(batches: int = 4, batch: int = 16, seq_len: int = 256) -> float:
    """Forward + statistics update of the cheapest model (1 block, d = 64, V = 2,048)."""
    model = build("gpt-neo", 64, 1, 2048, seed=0, allow_any_size=True).eval()
    wrapped = embedding_model(model, "bench")
    accs = train_accumulators(wrapped, ["last"], False, torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    ids = [torch.randint(0, 2048, (batch, seq_len), generator=g) for _ in range(batches + 1)]
    add_batch(wrapped, ids[0], ["last"], accs)  # warm-up
    start = time.perf_counter()
    for x in ids[1:]:
        add_batch(wrapped, x, ["last"], accs)
    return (time.perf_counter() - start) / (batches * batch * seq_len)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=50_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.npy"
        tokens = make_split(path, args.tokens)
        n = tokens.shape[0] * tokens.shape[1]
        rows = range(tokens.shape[0])
        classes = target_classes(tokens, rows, VOCAB)
        count_s = best(lambda: target_classes(tokens, rows, VOCAB))
        sha_s = best(lambda: file_sha256(path))
        ids_s = best(lambda: _check_ids(path, tokens, VOCAB))
    found = VOCAB if classes is None else classes.numel()
    pass_s = pass_seconds_per_token() * n
    results = {
        "tokens": n,
        "vocab": VOCAB,
        "classes_found": found,
        "target_classes_s": count_s,
        "split_sha256_s": sha_s,
        "id_check_s": ids_s,
        "cheapest_pass_s": pass_s,
        "share_of_cheapest_pass": count_s / pass_s,
        "threads": torch.get_num_threads(),
    }
    print(f"{n:,} tokens, V = {VOCAB:,}: {found:,} classes found as targets")
    print(f"  target_classes          {count_s:7.2f} s  ({n / count_s / 1e6:.0f} M tokens/s)")
    print(f"  split SHA-256 (collect) {sha_s:7.2f} s")
    print(f"  id range check          {ids_s:7.2f} s")
    print(f"  cheapest pass (1×64)    {pass_s:7.0f} s  → the count is {count_s / pass_s:.3%} of it")
    from results import record

    row = {
        "what": f"finding the classes of a {n / 1e6:.0f} M-token split (V = 128,256) before "
        "a train pass, beside opening it (SHA-256, id check) and the cheapest pass on "
        "this CPU (1 block, d = 64)",
        "result": f"**{count_s:.2f} s** (SHA-256 {sha_s:.2f} s, id check {ids_s:.2f} s; "
        f"{count_s / pass_s:.3%} of the cheapest pass)",
        "goal": "≪ a pass",
    }
    record("target_classes", row, results)


if __name__ == "__main__":
    main()
