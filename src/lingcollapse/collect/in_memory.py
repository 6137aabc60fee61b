"""Statistics from a model already in memory and batches of your own.

:func:`collect_embeddings` is ``lingcollapse collect`` for a notebook or a training
loop: the same wrapper finds the output layer's input (:func:`~.model.embedding_model`),
the same step turns a batch into samples (:func:`~.accumulate.add_batch`), the same
float64 accumulators keep the statistics. No file is read or written, and the model is
neither moved nor cast; it is put in eval mode for the pass and then left as it was.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Mapping
from typing import NamedTuple

import torch
from torch import Tensor, nn

from lingcollapse.collect.accumulate import (
    add_batch,
    finished,
    train_accumulators,
    validation_accumulators,
)
from lingcollapse.collect.model import DTYPES, EmbeddingModel, embedding_model
from lingcollapse.collect.run import parse_layers
from lingcollapse.device import check_device_name
from lingcollapse.errors import UserError
from lingcollapse.stats.classes import ClassStats
from lingcollapse.stats.validation import ValidationStats

SOURCE = "lingcollapse.collect_embeddings"  # the ``collector`` of the stats' metadata


class Collected(NamedTuple):
    """Train and validation statistics of one call (each one object, or one per layer)."""

    train: ClassStats | dict
    validation: ValidationStats | dict


def collect_embeddings(
    model: nn.Module,
    batches: Iterable,
    *,
    validation: Iterable | None = None,
    train_stats: ClassStats | Mapping | None = None,
    layers: str | list | None = None,
    min_count: int = 1,
    covariance: bool = False,
    dtype: str | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
):
    r"""Per-class statistics of a causal LM's context embeddings, from batches in memory.

    Every position t of a sequence gives one sample: the context embedding
    ``h(x_1..t)`` — the input of the output layer ``W h + b`` (Eq. 1), found with the
    same checks as ``lingcollapse collect`` — is a sample of class ``x_{t+1}``; a
    sequence of T tokens gives T − 1 samples. The train statistics keep, per class c in
    float64, the count ``N_c``, the mean ``μ_c = (1/N_c) Σ h`` (Eq. 2) and
    ``M2_c = Σ ‖h − μ_c‖² = N_c σ_c²`` (Eq. 3); they merge exactly over disjoint data
    (:meth:`ClassStats.merge`). The validation statistics keep, per true class, the
    cross-entropy over the full vocabulary, top-1 hits, and the NC4 decisions (Eq. 9–10):
    whether ``argmax_{c∈S} ⟨w_c, h⟩ + b_c`` equals ``argmin_{c∈S} ‖h − μ_c‖`` over the
    classes ``S = {c : N_c ≥ min_count}`` of the train statistics.

    Args:
        model: a causal LM: any ``torch.nn.Module`` whose ``get_output_embeddings()`` is
            its output layer — a Hugging Face model, a PEFT-wrapped one (e.g. LoRA; its
            adapters are applied, a LoRA on the output layer included), or your own
            module taking ids (B, T) and applying that layer at every position.
        batches: an iterable of token ids (B, T) (tensors, arrays or lists), or of dicts
            with ``input_ids`` and optionally ``attention_mask`` (a position counts only
            where it and its target are both 1) and ``labels`` (targets in Hugging Face's
            convention: ``labels[:, t+1]`` is the class of position t; ``-100`` ignored).
        validation: batches of validation data: the train pass runs first, then these
            are decided against its means; returns :class:`Collected` (train, validation).
        train_stats: train statistics (one :class:`ClassStats`, or one per layer) to
            decide against: ``batches`` are then validation data and the result is
            :class:`ValidationStats` (as ``collect --split validation --train-stats``).
        layers: None for the output layer's input alone; else ``"all"``, a list such as
            ``[0, 3, "last"]`` or ``"0,3,last"`` (0 = the token embeddings, i = the output
            of block i), and the result is a dict with one statistics object per layer.
        min_count: validation: the classes ``S`` the NC4 decisions choose among.
        covariance: also keep the d × d pooled within-class scatter
            ``Σ (h − μ_y)(h − μ_y)ᵀ`` (Papyan's NC1 and Tirer's quotient need it).
        dtype: None runs the model as it is; ``"bf16"`` or ``"fp16"`` run its forward
            under ``torch.autocast``. The statistics are float64 regardless.
        device: where the float64 statistics live (default: the model's device); the
            model itself is never moved, and batches go to its device.
        progress: show a progress bar (per batch; a notebook gets its widget).

    Returns:
        :class:`ClassStats` (train), :class:`ValidationStats` (with ``train_stats``),
        or :class:`Collected` (with ``validation``); a dict ``{layer: …}`` of them when
        ``layers`` is given. ``lingcollapse.measure`` takes them as they are.

    Raises:
        UserError: no output layer, NaN embeddings, malformed batches, ids outside the
            vocabulary, an unknown layer or dtype, train stats of another model.
    """
    _check_options(min_count, dtype, device, validation, train_stats)
    with _evaluating(model):
        wrapped = embedding_model(model, _model_name(model))
        chosen = _layers(layers, wrapped)
        where = torch.device(device) if device is not None else wrapped.device
        run = _Pass(wrapped, chosen, dtype, progress)
        if train_stats is not None:
            trains = _per_layer(train_stats, chosen, layers)
            return _result(run.validation(batches, trains, min_count, where), layers)
        train = run.train(batches, covariance, where)
        if validation is None:
            return _result(train, layers)
        valid = run.validation(validation, train, min_count, where)
        return Collected(_result(train, layers), _result(valid, layers))


class _Pass:
    """One model, its layers and its forward settings, for a train or validation pass."""

    def __init__(self, model: EmbeddingModel, layers: list, dtype: str | None, progress: bool):
        self.model, self.layers, self.dtype, self.progress = model, layers, dtype, progress

    def train(self, batches: Iterable, covariance: bool, device: torch.device) -> dict:
        accs = train_accumulators(self.model, self.layers, covariance, device)
        counted = self._feed(batches, accs, "train")
        meta = {"split": "train", "covariance": json.dumps(covariance)}
        return self._finish(accs, counted, meta)

    def validation(self, batches: Iterable, trains: dict, min_count: int, device) -> dict:
        accs = validation_accumulators(self.model, trains, min_count, device)
        counted = self._feed(batches, accs, "validation")
        return self._finish(accs, counted, {"split": "validation"})

    def _feed(self, batches: Iterable, accs: dict, split: str) -> dict:
        """Every batch through the model into ``accs``; the sequences and samples seen."""
        counted = {"sequences": 0, "tokens": 0, "every_position": True}
        with _autocast(self.dtype, self.model.device), _bar(batches, self.progress, split) as bar:
            for i, batch in enumerate(bar):
                ids, mask, labels = _unpack(batch, i, self.model)
                counted["tokens"] += add_batch(self.model, ids, self.layers, accs, mask, labels)
                counted["sequences"] += ids.shape[0]
                counted["every_position"] &= mask is None and labels is None
        if counted["sequences"] == 0:
            raise UserError(f"no batches given for the {split} pass: pass at least one (B, T)")
        return counted

    def _finish(self, accs: dict, counted: dict, meta: dict) -> dict:
        """Finished statistics per layer, with what they were made from in metadata."""
        common = {
            "collector": SOURCE,
            "model": self.model.name,
            "tokens": str(counted["tokens"]),
            "dtype": _dtype_name(self.model, self.dtype),
            **meta,
        }
        if counted["every_position"]:  # else T − 1 samples per sequence does not hold
            common["sequences"] = str(counted["sequences"])
        out = {}
        for layer, acc in accs.items():
            stats = finished(acc)
            stats.metadata.update(common, layer=str(layer))
            out[layer] = stats
        return out


def _check_options(min_count, dtype, device, validation, train_stats) -> None:
    if min_count < 1:
        raise UserError(f"min_count must be at least 1, not {min_count}")
    if dtype is not None and dtype not in DTYPES:
        raise UserError(f"unknown dtype {dtype!r}: use None (the model's), bf16 or fp16")
    if device is not None:
        check_device_name(str(device))
    if validation is not None and train_stats is not None:
        raise UserError(
            "give validation batches (train pass first) or train_stats (a validation pass "
            "alone), not both"
        )


def _model_name(model: nn.Module) -> str:
    """The name in the stats' metadata: the config's ``name_or_path`` (a dir or a hub id,
    which lets ``measure`` find the tokenizer) else the class name."""
    config = getattr(model, "config", None)
    return str(getattr(config, "name_or_path", "") or type(model).__name__)


def _dtype_name(model: EmbeddingModel, dtype: str | None) -> str:
    """As ``collect`` records it: ``bfloat16`` for bf16; the head's dtype for None."""
    chosen = model.classifier()[0].dtype if dtype is None else DTYPES[dtype]
    return str(chosen).removeprefix("torch.")


def _layers(spec, model: EmbeddingModel) -> list:
    """``["last"]`` for None; else :func:`parse_layers` of a string or a list."""
    if spec is None:
        return ["last"]
    if not isinstance(spec, str):
        spec = ",".join(str(layer) for layer in spec)
    if spec == "last":  # needs no layer count: any module has a last layer
        return ["last"]
    return parse_layers(spec, model.num_layers)


def _per_layer(train_stats, layers: list, spec) -> dict:
    """``train_stats`` as {layer: ClassStats} for the layers asked for."""
    if isinstance(train_stats, ClassStats):
        if spec is not None and layers != ["last"]:
            raise UserError(
                "train_stats is one ClassStats but several layers were asked for: pass the "
                "dict collect_embeddings(..., layers=...) returned"
            )
        return {"last": train_stats}
    if isinstance(train_stats, Mapping):
        missing = [layer for layer in layers if layer not in train_stats]
        if missing:
            raise UserError(f"train_stats has no statistics of layer(s) {missing}")
        return {layer: _train_of(train_stats[layer], layer) for layer in layers}
    return {"last": _train_of(train_stats, "last")}


def _train_of(value, layer) -> ClassStats:
    if not isinstance(value, ClassStats):
        raise UserError(
            f"train_stats of layer {layer!r} must be ClassStats (from collect_embeddings or "
            f"load_stats), not {type(value).__name__}"
        )
    return value


def _result(per_layer: dict, spec):
    """One object for the default layer, else the dict."""
    return per_layer["last"] if spec is None else per_layer


def _unpack(batch, index: int, model: EmbeddingModel):
    """(ids, attention_mask, labels) of one batch, as int64 (B, T) on the model's device."""
    if isinstance(batch, Mapping):
        if "input_ids" not in batch:
            keys = ", ".join(map(str, batch)) or "none"
            raise UserError(f"batch {index} is a dict without 'input_ids' (its keys: {keys})")
        parts = [batch["input_ids"], batch.get("attention_mask"), batch.get("labels")]
    else:
        parts = [batch, None, None]
    ids, mask, labels = (
        None if part is None else _ids(part, index, name, model)
        for part, name in zip(parts, ("input_ids", "attention_mask", "labels"), strict=True)
    )
    for name, part in (("attention_mask", mask), ("labels", labels)):
        if part is not None and part.shape != ids.shape:
            raise UserError(
                f"batch {index}: {name} has shape {tuple(part.shape)}, input_ids "
                f"{tuple(ids.shape)}: they must match"
            )
    _check_range(ids, index, model.vocab_size, "input_ids")
    if labels is not None:
        _check_range(labels[labels != -100], index, model.vocab_size, "labels")
    return ids, mask, labels


def _ids(value, index: int, name: str, model: EmbeddingModel) -> Tensor:
    try:
        tensor = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        raise UserError(
            f"batch {index}: {name} is {type(value).__name__}, not token ids (B, T)"
        ) from None
    if tensor.ndim == 1 and name == "input_ids":
        tensor = tensor.unsqueeze(0)  # one sequence
    if tensor.ndim != 2 or tensor.shape[1] < 2:
        raise UserError(
            f"batch {index}: {name} has shape {tuple(tensor.shape)}; expected (B, T) with "
            "T ≥ 2 (a sequence of T tokens gives T − 1 samples)"
        )
    if tensor.is_floating_point() or tensor.is_complex():
        raise UserError(f"batch {index}: {name} holds {tensor.dtype}, not integer token ids")
    return tensor.to(model.device, torch.long)


def _check_range(ids: Tensor, index: int, vocab: int, name: str) -> None:
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab):
        bad = int(ids.min()) if int(ids.min()) < 0 else int(ids.max())
        raise UserError(
            f"batch {index}: {name} holds token id {bad}, outside the model's vocabulary "
            f"0 … {vocab - 1}"
        )


@contextlib.contextmanager
def _evaluating(model: nn.Module):
    """Eval mode (no dropout) for the pass; every module's own mode restored after."""
    if not isinstance(model, nn.Module):
        raise UserError(
            f"model must be a torch.nn.Module causal LM, not {type(model).__name__}"
        )
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def _autocast(dtype: str | None, device: torch.device):
    if dtype is None or DTYPES[dtype] == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[dtype])


@contextlib.contextmanager
def _bar(batches: Iterable, show: bool, split: str):
    """The batches, behind a progress bar when asked for. tqdm.auto, not the CLI's bar:
    asked for here, it shows in a notebook too, whose output is no terminal."""
    if not show:
        yield batches
        return
    from tqdm.auto import tqdm

    total = len(batches) if hasattr(batches, "__len__") else None
    with tqdm(batches, total=total, desc=f"collect {split}", unit="batch") as bar:
        yield bar
