"""A batch of token ids becomes statistics: the step both collection paths share.

``lingcollapse collect`` (:mod:`.run`, batches cut from a packed split) and
:func:`~lingcollapse.collect.in_memory.collect_embeddings` (a model and batches already
in memory) make their accumulators here and feed them with :func:`add_batch`, so the
two cannot drift apart.

Samples (paper §3.2): the context embedding ``h(x_1..t)`` at position t, the input of
the output layer, is a sample of class ``x_{t+1}``; a sequence of T tokens gives T − 1
samples. Train statistics are per-class counts, means and M2 (Eq. 2–3) in float64
(:class:`~lingcollapse.stats.classes.ClassAccumulator`); validation statistics are the
loss, accuracy and NC4 decisions (Eq. 9–10) against given train means
(:class:`~lingcollapse.stats.validation.ValidationAccumulator`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from lingcollapse.collect.model import EmbeddingModel
from lingcollapse.errors import UserError
from lingcollapse.stats.classes import ClassAccumulator, ClassStats
from lingcollapse.stats.validation import ValidationAccumulator, ValidationStats

IGNORE_INDEX = -100  # Hugging Face's label of a position without a target


def train_accumulators(
    model: EmbeddingModel,
    layers: list,
    covariance: bool,
    device: torch.device,
    classes: Tensor | None = None,
) -> dict:
    """One :class:`ClassAccumulator` (float64, on ``device``) per layer, with rows for
    ``classes`` alone where given (the targets the data holds), else for all V. Each
    is as wide as its layer (OPT-350m's blocks are wider than its head's input)."""
    widths = model.widths(layers)
    return {
        layer: ClassAccumulator(model.vocab_size, widths[layer], covariance, device, classes)
        for layer in layers
    }


def validation_accumulators(
    model: EmbeddingModel,
    trains: dict,
    min_count: int,
    device: torch.device,
    names: dict | None = None,
) -> dict:
    """One :class:`ValidationAccumulator` per layer of ``trains`` ({layer: ClassStats}),
    deciding with the model's output layer; each train stats checked to belong to the
    model and to hold finite means. ``names`` {layer: str} name them in errors. The
    model's logit transform (soft-capping, a scale; checked on load) applies to the
    loss and decisions; a model whose logits no known transform explains is refused."""
    transform = model.logit_transform()
    weight, bias = model.classifier()
    widths = model.widths(list(trains))
    accs = {}
    for layer, train in trains.items():
        name = (names or {}).get(layer, f"the train stats of layer {layer}")
        if train.vocab_size != model.vocab_size or train.dim != widths[layer]:
            raise UserError(
                f"{name} (V={train.vocab_size}, d={train.dim}) do not belong to this model "
                f"(V={model.vocab_size}, d={widths[layer]})"
            )
        if widths[layer] != model.dim:
            raise UserError(
                f"layer {layer} of {model.name} is {widths[layer]} wide but its output layer "
                f"reads {model.dim}: the loss and NC4 decisions need W h (Eq. 1); validate "
                "--layers last"
            )
        check_finite_means(name, train, min_count)
        accs[layer] = ValidationAccumulator(weight, bias, train, min_count, device, transform)
    return accs


def check_finite_means(name: str, train: ClassStats, min_count: int) -> None:
    """NaN or Inf means of a kept class would decide every NCC comparison (Eq. 9)."""
    kept = train.counts >= min_count  # (V,)
    if not torch.isfinite(train.means[kept]).all():
        raise UserError(
            f"{name} hold NaN or Inf means of classes with ≥ {min_count} "
            "samples: re-collect them (e.g. with --dtype float32) or raise --min-count"
        )


def add_batch(
    model: EmbeddingModel,
    ids: Tensor,
    layers: list,
    accs: dict,
    attention_mask: Tensor | None = None,
    labels: Tensor | None = None,
) -> int:
    """One batch into every layer's accumulator; returns the samples added.

    ``ids`` (B, T): the embeddings at positions 0 … T−2 are samples of tokens 1 … T−1.
    ``labels`` (B, T), as Hugging Face's models take them (shifted here, ``-100``
    ignored), replace ``ids`` as targets; with ``attention_mask`` (B, T) a position
    counts only where it and its target are both real tokens (1), never padding.
    """
    embeddings = model.embeddings(ids, layers, attention_mask)
    if attention_mask is None and labels is None:  # every position: no gather, no copy
        targets = ids[:, 1:].reshape(-1)  # (B·(T−1),)
        for layer, h in embeddings.items():
            accs[layer].update(h[:, :-1].reshape(targets.numel(), -1), targets)
        return targets.numel()
    shifted = (ids if labels is None else labels)[:, 1:]  # (B, T−1)
    keep = shifted != IGNORE_INDEX
    if attention_mask is not None:
        real = attention_mask.bool()
        keep &= real[:, 1:] & real[:, :-1]
    targets = shifted[keep]  # (n,)
    for layer, h in embeddings.items():  # split over devices, h is where its block ran
        accs[layer].update(h[:, :-1][keep.to(h.device)], targets)  # (n, d)
    return targets.numel()


def finished(acc) -> ClassStats | ValidationStats:
    """The statistics an accumulator holds (moments computed from its sums)."""
    return acc.compute() if isinstance(acc, ClassAccumulator) else acc.state
