"""Collection of a model split over devices: per batch, the statistics update against the
forward pass it follows.

    python benchmarks/bench_collect_device_map.py             # 12×768 GPT-Neo, V = 50,257
    python benchmarks/bench_collect_device_map.py --batches 3 # a quicker look

One model (the paper's GPT-Neo architecture at 12 × 768, random weights, as in
``bench_collect.py``) is placed several ways, and every placement streams the same
batches in one process, side by side. Per batch, synchronised: **forward** =
``EmbeddingModel.embeddings(ids, ["last"])`` (the body through accelerate's hooks), and
**update** = what ``add_batch`` does after it (the (B, T−1, d) embeddings moved to the
statistics' device and added to the float64 ``ClassAccumulator``, Eq. 2–3). The
placements take the batches in turn, batch by batch, so a shared machine's load falls on
all of them; after a warm-up batch, the best time of each (the least disturbed) and the
median of the per-batch ratios. Goal (issue 15): update ≤ 5% of the forward.

Placements without CUDA (this is what a CPU run can and cannot show):

- ``whole``: no map, the reference forward.
- ``hooks``: the model in two groups of blocks behind accelerate's hooks on the CPU
  (``dispatch_model(force_hooks=True)``): the forward's own arithmetic plus the hooks'
  cost; no weights move. The statistics update's share of a split model's compute.
- ``cpu+disk``: ``load_model(device_map="sequential")`` with a ``max_memory`` that holds
  about half the blocks and an offload folder, as ``collect --device-map`` loads it:
  the other blocks' weights are read from disk (the page cache, once warm) in every
  batch. Its forward is slower by that reading, so its ratio flatters; it is there to
  show the path works at this size, not as the claim.

With CUDA: ``gpus`` (``balanced`` over all GPUs; with one GPU, two hooked groups on
it), ``gpu+cpu`` (half the blocks on GPU 0, the rest offloaded to the CPU and copied to
the GPU in every batch) and ``gpus, statistics on cpu`` (``--device cpu``: the update
then includes the copy to the host and the update there). A CPU run shows no transfer
between devices: on the CPU the head's input is where the statistics are.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_collect import VOCAB, build, make_data

from lingcollapse.collect.model import EmbeddingModel, embedding_model, load_model
from lingcollapse.stats import ClassAccumulator


def sync() -> None:
    for index in range(torch.cuda.device_count()):
        torch.cuda.synchronize(index)


class Side:
    """One placement's model, accumulator and per-batch times."""

    def __init__(self, model: EmbeddingModel, stats_device) -> None:
        self.model = model
        self.acc = ClassAccumulator(model.vocab_size, model.dim, device=stats_device)
        self.forward: list[float] = []
        self.update: list[float] = []

    def step(self, batch: np.ndarray, timed: bool) -> None:
        """One batch: the forward, then the update ``add_batch`` does, synchronised."""
        ids = torch.from_numpy(batch.astype(np.int64)).to(self.model.device)  # (B, T)
        sync()
        t0 = time.perf_counter()
        h = self.model.embeddings(ids, ["last"])["last"]  # (B, T, d)
        sync()
        t1 = time.perf_counter()
        targets = ids[:, 1:].reshape(-1)  # as add_batch: (B·(T−1),)
        self.acc.update(h[:, :-1].reshape(targets.numel(), -1), targets)
        sync()
        if timed:
            self.forward.append(t1 - t0)
            self.update.append(time.perf_counter() - t1)

    def summary(self) -> dict:
        """Best of each (the least disturbed on a shared machine) and the median of the
        per-batch ratios."""
        fwd, upd = min(self.forward), min(self.update)
        ratios = np.array(self.update) / np.array(self.forward)
        return {
            "forward_s": fwd,
            "update_s": upd,
            "ratio": upd / fwd,
            "median_ratio": float(np.median(ratios)),
            "forward_s_all": self.forward,
            "update_s_all": self.update,
            "stats_device": str(self.acc.device),
            "map": _where(self.model),
        }


def hooked(path: Path, device: str) -> EmbeddingModel:
    """The model in two groups of blocks, each behind accelerate's hooks on ``device``."""
    from accelerate import dispatch_model

    model = load_model(str(path), device=device).model
    depth = model.config.num_layers
    where = 0 if device.startswith("cuda") else "cpu"
    first = ["transformer.wte", "transformer.wpe", "transformer.drop", "lm_head"]
    groups = {name: where for name in first}
    groups |= {f"transformer.h.{i}": where for i in range(depth)}
    groups["transformer.ln_f"] = where
    dispatch_model(model, device_map=groups, main_device=device, force_hooks=True)
    wrapped = embedding_model(model, "hooked")
    assert any(hasattr(m, "_hf_hook") for m in model.modules())
    return wrapped


def placements(path: Path, offload: Path, weights: int, args):
    """(name, model, statistics device) for this machine."""
    # the embeddings and half the blocks in memory, and room for one more, which
    # accelerate keeps to read the others into from disk
    blocks = weights - 4 * VOCAB * args.width
    half = {"cpu": weights - blocks // 2 + blocks // args.depth}
    if not torch.cuda.is_available():
        yield "whole", load_model(str(path), device="cpu"), "cpu"
        yield "hooks", hooked(path, "cpu"), "cpu"
        split = load_model(
            str(path), device_map="sequential", max_memory=half, offload_folder=str(offload)
        )
        assert "disk" in split.model.hf_device_map.values()
        yield "cpu+disk", split, "cpu"
        return
    if torch.cuda.device_count() > 1:
        gpus = load_model(str(path), device_map="balanced")
    else:
        gpus = hooked(path, "cuda:0")
    yield "gpus", gpus, gpus.output_device()
    yield "gpus, statistics on cpu", gpus, torch.device("cpu")
    budget = {0: weights // 2, "cpu": 4 * weights}
    yield "gpu+cpu", load_model(str(path), device_map="sequential", max_memory=budget), "cuda:0"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--width", type=int, default=768)
    p.add_argument("--depth", type=int, default=12)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--batches", type=int, default=6)
    args = p.parse_args()
    print(
        f"GPT-Neo {args.depth}×{args.width}, V={VOCAB:,}, batch {args.batch_size} × "
        f"{args.seq_len}, threads={torch.get_num_threads()}"
    )
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        path, data = Path(tmp) / "model", Path(tmp) / "data"
        build(args.width, args.depth, path)
        make_data(data, (args.batches + 1) * args.batch_size, args.seq_len)
        tokens = np.load(data / "train.npy", mmap_mode="r")
        weights = (path / "model.safetensors").stat().st_size
        sides = {
            name: Side(model, torch.device(stats))
            for name, model, stats in placements(path, Path(tmp) / "offload", weights, args)
        }
        # round robin, batch by batch: a shared machine's load falls on every placement
        for start in range(0, (args.batches + 1) * args.batch_size, args.batch_size):
            batch = np.asarray(tokens[start : start + args.batch_size])
            for side in sides.values():
                side.step(batch, timed=start > 0)  # the first batch warms up
        for name, side in sides.items():
            found = results[name] = side.summary()
            print(
                f"  {name:<24} forward {found['forward_s'] * 1e3:8.1f} ms   update "
                f"{found['update_s'] * 1e3:7.2f} ms   ({found['ratio']:.2%}; per-batch "
                f"median {found['median_ratio']:.2%})   {found['map']}"
            )
    defaults = (768, 12, 256, 4, 6)
    if (args.width, args.depth, args.seq_len, args.batch_size, args.batches) == defaults:
        _record(args, results)


def _where(model: EmbeddingModel) -> str:
    """Which modules are where, in short: ``cpu ×7, disk ×3``."""
    placed = getattr(model.model, "hf_device_map", None)
    if not placed:
        return f"all on {model.device}"
    counts: dict[str, int] = {}
    for device in placed.values():
        counts[str(device)] = counts.get(str(device), 0) + 1
    return ", ".join(f"{device} ×{n}" for device, n in counts.items()) + " modules"


def _record(args, results: dict) -> None:
    from results import record

    cuda = torch.cuda.is_available()
    claim = "gpus" if cuda else "hooks"
    shares = ", ".join(f"{name}: {r['ratio']:.2%}" for name, r in results.items())
    where = "over the GPUs" if cuda else "in two hooked groups on the CPU (no transfer)"
    row = {
        "what": f"collection of a model split over devices ({args.depth}×{args.width} "
        f"GPT-Neo, V = 50,257, {where}): per batch of {args.batch_size} × {args.seq_len}, "
        "the statistics update against the forward, same process",
        "result": f"**{results[claim]['ratio']:.2%}** of the forward, best of "
        f"{args.batches} batches each (per-batch median "
        f"{results[claim]['median_ratio']:.2%}; {shares})",
        "goal": "≤ 5%",
    }
    record("collect_device_map_cuda" if cuda else "collect_device_map", row, {
        "args": vars(args),
        "placements": results,
    })  # fmt: skip


if __name__ == "__main__":
    main()
