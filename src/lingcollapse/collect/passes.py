"""What one ``collect`` job holds in memory: the classes its train statistics keep rows
for, and the passes over the data its layers are cut into when they do not fit together.

Classes (train split): a class is a next token, so the classes a shard of sequences can
give samples of are the tokens 1 … T−1 of its sequences. :func:`target_classes` finds
them before the pass (one streaming ``np.bincount`` over the memory-mapped split, about
as long as reading it), and the accumulators keep rows for those R classes alone: at
Llama-3's V = 128,256 and d = 4,096 a layer's float64 shifts and sums are 16·V·d = 8.4 GB,
16·R·d for R classes. The files still hold all V classes (absent ones zero).

Passes: all hidden states come out of one forward pass, but the statistics of 33 such
layers rarely fit beside a model. :func:`plan` asks :func:`lingcollapse.memory.layer_passes`
for the fewest passes whose statistics fit, says so before the work starts, and keeps a
pass a checkpoint was written for whole, so that it resumes. Under ``torchrun`` every
rank runs the same passes (:func:`agree`).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.distributed as tdist

from lingcollapse import memory
from lingcollapse.device import Dist
from lingcollapse.errors import UserError
from lingcollapse.memory import ModelShape, gib

log = logging.getLogger(__name__)

_BLOCK_TOKENS = 1 << 22  # tokens counted at a time: 16 MB of int32, 32 MB as intp


def target_classes(tokens: np.ndarray, rows: range, vocab_size: int) -> torch.Tensor | None:
    """The classes that occur as targets (tokens 1 … T−1 of each sequence) in ``rows``
    of a packed split ``[S, T]``, sorted (R,) int64; None when that is every class (then
    an accumulator keeps its plain V rows). Read in blocks of sequences, so a split of
    many GB is never held whole; ids are in [0, V) (``open_split`` checked them)."""
    seen = np.zeros(vocab_size, dtype=bool)  # (V,)
    step = max(1, _BLOCK_TOKENS // tokens.shape[1])
    for start in range(rows.start, rows.stop, step):
        block = np.asarray(tokens[start : min(start + step, rows.stop), 1:])  # (b, T−1)
        seen |= np.bincount(block.ravel(), minlength=vocab_size).astype(bool)
    if seen.all():
        return None
    return torch.from_numpy(np.flatnonzero(seen))


def agree(dist: Dist, free: int, rows: int | None, resumed: list) -> tuple[int, int | None, list]:
    """Under ``torchrun`` every rank must run the same passes (rank 0 merges each layer
    when its pass ends): plan with the least free memory of any rank, the most classes
    of any rank's shard, and the pass rank 0's checkpoint holds."""
    if dist.world == 1:
        return free, rows, resumed
    gathered: list = [None] * dist.world
    tdist.all_gather_object(gathered, (free, rows, resumed))
    frees, counts, resumes = zip(*gathered, strict=True)
    most = None if any(r is None for r in counts) else max(counts)
    return min(frees), most, list(resumes[0])


def plan(
    shape: ModelShape,
    todo: list,
    resumed: list,
    batch: int,
    seq_len: int,
    free: int,
    device,
    *,
    split: str = "train",
    hidden_states: int = 0,
    covariance: bool = False,
    logits: bool = False,
    rows: int | None = None,
) -> list[list]:
    """The passes that collect the layers ``todo``: first ``resumed`` (the layers a
    checkpoint holds, one pass whole, so that it continues), then the others in the
    fewest passes whose statistics fit in ``free`` bytes beside one batch
    (:func:`lingcollapse.memory.layer_passes`). More than one pass is said before it
    starts, with what did not fit."""
    options = {
        "split": split,
        "hidden_states": hidden_states,
        "covariance": covariance,
        "logits": logits,
        "rows": rows,
    }
    if resumed:
        need = memory.collect_work_bytes(shape, batch, seq_len, layers=len(resumed), **options)
        if need > free:
            raise UserError(
                f"the checkpoint of a pass of {len(resumed)} layers needs {gib(need)} to "
                f"continue but {gib(free)} is free on {device}: free memory, or delete the "
                "checkpoint to collect those layers again in smaller passes"
            )
    rest = [layer for layer in todo if layer not in resumed]
    more = memory.layer_passes(shape, rest, batch, seq_len, free, **options)
    if len(more) > 1:
        log.info("%s", describe(shape, more, free, device, split, covariance, rows))
    if resumed and more:
        log.info(
            "collect: the checkpoint's pass of %d layers first, then %d more",
            len(resumed),
            len(more),
        )
    return ([resumed] if resumed else []) + more


def describe(shape: ModelShape, passes: list[list], free: int, device, split, covariance, rows):
    """``collect: the statistics of 33 layers (8.4 GiB each) do not fit beside the model
    in the 23.0 GiB free on cuda:0: 4 passes over the data, of ≤ 9 layers each``."""
    count = sum(len(p) for p in passes)
    each = memory.stats_bytes(shape, split, 1, shape.vocab, covariance, rows)
    kept = "" if rows is None else f", {rows:,} of {shape.vocab:,} classes"
    return (
        f"collect: the statistics of {count} layers ({gib(each)} each{kept}) do not fit "
        f"beside the model in the {gib(free)} free on {device}: {len(passes)} passes over "
        f"the data, of ≤ {max(len(p) for p in passes)} layers each"
    )
