"""One pass of a causal LM over a packed split into stats files (``lingcollapse collect``).

Train split: per requested layer, a :class:`ClassAccumulator` (counts, means, M2 and
optionally the within-class scatter) from the body's hidden states alone. Validation
split: per layer, a :class:`ValidationAccumulator` (loss, accuracy, NC4 decisions)
against that layer's train stats. Both from the same forward pass, in one pass.

Resumable: every ``checkpoint_every`` sequences the raw accumulator state and the data
cursor go atomically into ``OUT.partial``, with a SHA-256 of the state in its metadata;
the same command after an interruption (even ``kill -9``) restores them and ends with the
very bytes an uninterrupted run writes. A damaged checkpoint or output is reported, never
used.
Within memory (:mod:`.passes`): train statistics keep rows for the classes the shard
holds as targets, and layers whose statistics do not fit together beside the model are
collected in several passes over the data, said before the first starts. Each pass
checkpoints into ``OUT.partial`` (with its layers) and writes its layers' files, one
layer at a time, when it ends; a re-run skips the layers whose files exist and resumes
the checkpoint's pass first. The files are those one pass writes, byte for byte.
Data-parallel: ``--shard I/N`` takes a disjoint block of sequences; under ``torchrun``
each rank takes a block of that and rank 0 merges the ranks' statistics.

Provenance: every file names what its numbers depend on — the model (name,
revision, SHA-256 of all its weights), layer, split, data (SHA-256 of ``meta.json`` and
of the split), shard, dtype, and ``covariance`` (train) or ``min_count`` and the train
means (validation) — so that ``stats merge`` joins only disjoint shards of one pass. The
weights' SHA-256 is computed once per pass and also keys the resume fingerprint.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from lingcollapse import faults, memory
from lingcollapse.collect import distributed, passes
from lingcollapse.collect.accumulate import (
    add_batch,
    finished,
    train_accumulators,
    validation_accumulators,
)
from lingcollapse.collect.data import REMAKE, Shard, open_split
from lingcollapse.collect.device_map import STRATEGIES
from lingcollapse.collect.model import DTYPES, EmbeddingModel, load_model
from lingcollapse.device import (
    bind,
    finish,
    group_max_memory,
    parse_max_memory,
    setup,
    statistics_device,
)
from lingcollapse.errors import UserError, did_you_mean, first_line
from lingcollapse.io import atomic_path, exclusive, file_sha256, read_json, remove_stale_temps
from lingcollapse.memory import ModelShape, collect_work_bytes, is_out_of_memory
from lingcollapse.progress import progress
from lingcollapse.stats.classes import ClassAccumulator
from lingcollapse.stats.files import load_stats, save_stats, stats_path, tensors_sha256

log = logging.getLogger(__name__)


@dataclass
class CollectConfig:
    """What one collection pass reads and writes; recorded in every file it makes."""

    model: str
    data: str
    split: str = "train"
    out: str = "stats/train.safetensors"
    batch_size: int = 8
    checkpoint_every: int = 1024  # sequences
    shard: str | None = None
    layers: str = "last"  # "last", "all", or comma-separated indices (and "last")
    dtype: str = "float32"
    revision: str | None = None
    train_stats: str | None = None  # validation split: the train stats of the NCC means
    min_count: int = 1  # validation split: the kept classes of the NC4 decisions
    covariance: bool = False
    device: str = "auto"
    trust_remote_code: bool = False
    # a model split over devices (accelerate): where it goes, within what budget; then
    # `device` is where the statistics live (auto: where the output layer's input is)
    device_map: str | None = None  # auto, balanced, balanced_low_0 or sequential
    max_memory: str | None = None  # e.g. "0=20GiB,1=40GiB,cpu=64GiB"
    offload_folder: str | None = None  # layers beyond max_memory may stay on disk

    def __post_init__(self) -> None:
        self._check_placement()
        if self.split not in ("train", "validation"):
            raise UserError(f"--split must be train or validation, not {self.split!r}")
        if self.batch_size < 1:
            raise UserError(f"--batch-size must be at least 1, not {self.batch_size}")
        if self.checkpoint_every < 1:
            raise UserError(f"--checkpoint-every must be at least 1, not {self.checkpoint_every}")
        if self.train_stats:  # a run dir stands for its stats/train.safetensors
            self.train_stats = str(stats_path(self.train_stats))
        if self.split == "validation" and not self.train_stats:
            raise UserError(
                "--split validation needs --train-stats (the train stats whose "
                "means the nearest-class-centre decisions use)"
            )
        if self.min_count < 1:
            raise UserError(f"--min-count must be at least 1, not {self.min_count}")
        if self.dtype not in DTYPES:
            raise UserError(f"unknown --dtype {self.dtype!r}: use one of float32, bf16, fp16")
        if Path(self.out).is_dir():
            raise UserError(
                f"--out {self.out} is a directory: give the stats file to write, e.g. "
                f"{Path(self.out) / f'{self.split}.safetensors'}"
            )
        Shard.parse(self.shard)

    def _check_placement(self) -> None:
        """``--device-map`` and its options, spelling only (a sweep checks its grid where
        no GPU is)."""
        if self.device_map is None:
            options = {"--max-memory": self.max_memory, "--offload-folder": self.offload_folder}
            given = [flag for flag, value in options.items() if value is not None]
            if given:
                verb = "apply" if len(given) > 1 else "applies"
                raise UserError(
                    f"{' and '.join(given)} {verb} only to a model split by --device-map: "
                    "add --device-map auto, or leave it out"
                )
            return
        if self.device_map not in STRATEGIES:
            raise UserError(
                f"unknown --device-map {self.device_map!r}: use one of {', '.join(STRATEGIES)}"
                + did_you_mean(self.device_map, STRATEGIES)
            )
        if self.max_memory is not None:
            parse_max_memory(self.max_memory)
        if self.offload_folder is not None and Path(self.offload_folder).is_file():
            raise UserError(f"--offload-folder {self.offload_folder} is a file: give a directory")


def parse_layers(spec: str, num_layers: int) -> list[int | str]:
    """``last`` | ``all`` (every block's input, 0 … L−1, and ``last``) | ``i,j,…,last``."""
    if spec == "last":
        return ["last"]
    if spec == "all":
        return [*range(num_layers), "last"]
    layers: list[int | str] = []
    for part in spec.split(","):
        part = part.strip()
        if part == "last":
            layers.append("last")
            continue
        try:
            index = int(part)
        except ValueError:
            raise UserError(f"--layers: {part!r} is neither an index nor 'last'") from None
        if not 0 <= index < num_layers:
            raise UserError(
                f"--layers: index {index} is out of range: the model has "
                f"{num_layers} layers (0 … {num_layers - 1}, or 'last')"
            )
        layers.append(index)
    return list(dict.fromkeys(layers))


def layer_path(out: str | Path, layer: int | str) -> Path:
    """``OUT`` for the last layer, ``OUT`` with ``.layerNN`` before the suffix otherwise."""
    out = Path(out)
    return out if layer == "last" else out.with_name(f"{out.stem}.layer{layer:02d}{out.suffix}")


def collect(cfg: CollectConfig) -> list[Path]:
    """Run the job; returns its stats files (rank 0) or [] (other ranks). Layers whose
    statistics do not fit together beside the model are collected in several passes
    over the data, each writing its layers' files when it ends."""
    dist = setup(cfg.device, device_map=cfg.device_map is not None)
    model = _load(cfg, dist)
    device = dist.device  # the statistics': with a device map, where the head's input is
    layers = parse_layers(cfg.layers, model.num_layers)
    tokens = open_split(cfg.data, cfg.split, model.vocab_size)
    shard = Shard(dist.rank, dist.world).within(Shard.parse(cfg.shard))
    rows = shard.rows(tokens.shape[0])
    outputs = {layer: layer_path(cfg.out, layer) for layer in layers}
    if cfg.split == "validation":
        _check_train_stats(cfg, model, layers, device)
    provenance = _provenance(cfg, model)
    fingerprint = _fingerprint(cfg, provenance, layers)
    partial = _partial_path(cfg.out, dist)
    with exclusive(partial, "statistics"):
        for path in [partial, *(outputs.values() if dist.rank == 0 else [])]:
            remove_stale_temps(path)
        todo = _unfinished(partial, fingerprint, layers, outputs)
        if todo:
            classes, plan = _plan(
                cfg, model, tokens, rows, layers, todo, partial, fingerprint, dist
            )
            meta = _metadata(cfg, tokens, provenance, fingerprint)
            for number, group in enumerate(plan, 1):
                label = f" (pass {number} of {len(plan)})" if len(plan) > 1 else ""
                if label:
                    log.info("collect%s: layers %s", label, ", ".join(map(str, group)))
                accs = _accumulators(cfg, model, group, device, classes)
                key = _pass_fingerprint(fingerprint, group, layers)
                cursor = _resume(partial, key, group, accs)
                _pass(cfg, model, tokens, rows, group, accs, cursor, partial, key, dist, label)
                _write(outputs, accs, partial, meta, dist)
    finish(dist)
    return list(outputs.values()) if dist.rank == 0 else []


def _write(outputs: dict, accs: dict, partial: Path, meta: dict, dist) -> None:
    """Merge the ranks' statistics on rank 0 and write one file per layer of the pass,
    a layer at a time: its accumulator is finished (its (V, d) means made), merged,
    written and let go before the next's, so the peak holds one layer's finished
    statistics whatever the number of layers."""
    for layer in list(accs):
        results = distributed.merge_to_rank0({layer: finished(accs.pop(layer))}, dist)
        if dist.rank == 0:
            save_stats(outputs[layer], results[layer], **meta, layer=str(layer))
        del results
    partial.unlink(missing_ok=True)


def _pass(
    cfg,
    model: EmbeddingModel,
    tokens,
    rows: range,
    layers,
    accs,
    cursor: int,
    partial: Path,
    fingerprint: str,
    dist,
    label: str = "",
) -> None:
    seq_len = tokens.shape[1]
    total = len(rows)
    since_checkpoint = 0
    bar = progress(
        total=total * seq_len,
        initial=cursor * seq_len,
        unit="tok",
        unit_scale=True,
        desc=f"collect {cfg.split}{label}" + dist.tag,
    )
    with bar, _out_of_memory(cfg, model.device, seq_len, partial):
        for start in range(cursor, total, cfg.batch_size):
            stop = min(start + cfg.batch_size, total)
            batch = np.asarray(tokens[rows.start + start : rows.start + stop])
            ids = torch.from_numpy(batch.astype(np.int64)).to(model.device)  # (B, T)
            add_batch(model, ids, layers, accs)
            since_checkpoint += stop - start
            bar.update((stop - start) * seq_len)
            bar.set_postfix_str(f"{stop}/{total} seq", refresh=False)
            faults.point("collect.batch")
            if since_checkpoint >= cfg.checkpoint_every and stop < total:
                _checkpoint(partial, fingerprint, accs, stop)
                since_checkpoint = 0


def _load(cfg: CollectConfig, dist) -> EmbeddingModel:
    """The model on ``--device``, or split over this rank's devices by ``--device-map``;
    then the statistics' device is chosen where its output layer's input comes out
    (``--device auto``), and each layer's (B, T, d) embeddings move there, never the
    statistics."""
    if cfg.device_map is None:
        return load_model(cfg.model, cfg.revision, cfg.dtype, dist.device, cfg.trust_remote_code)
    budget = None if cfg.max_memory is None else parse_max_memory(cfg.max_memory)

    def where(output: torch.device) -> torch.device:
        return statistics_device(cfg.device, output, dist.gpus, dist.local_world)

    where(torch.device("cpu"))  # a --device no GPU here can serve: refused before loading
    model = load_model(
        cfg.model,
        cfg.revision,
        cfg.dtype,
        trust_remote_code=cfg.trust_remote_code,
        device_map=cfg.device_map,
        max_memory=group_max_memory(budget, dist.gpus, local_world=dist.local_world),
        offload_folder=cfg.offload_folder,
    )
    bind(dist, where(model.output_device()))
    return model


def _accumulators(cfg: CollectConfig, model: EmbeddingModel, layers, device, classes=None) -> dict:
    """The train pass's accumulators (rows for ``classes`` alone, where given), or the
    validation pass's, which read and check each layer's ``--train-stats``, one file
    at a time (a train stats file is 8·V·d bytes)."""
    if cfg.split == "train":
        return train_accumulators(model, layers, cfg.covariance, device, classes)
    accs = {}
    for layer in layers:
        path = layer_path(cfg.train_stats, layer)
        trains = {layer: load_stats(path, kind="train")}
        names = {layer: f"train stats {path}"}
        accs |= validation_accumulators(model, trains, cfg.min_count, device, names)
        del trains
    return accs


def _check_train_stats(cfg: CollectConfig, model: EmbeddingModel, layers, device) -> None:
    """Every layer's ``--train-stats`` read and checked before anything is hashed or
    written (the passes read them again, each its own layers)."""
    for layer in layers:
        _accumulators(cfg, model, [layer], device)


# ---------------------------------------------------------------- memory


def _plan(cfg, model: EmbeddingModel, tokens, rows, layers, todo, partial, fingerprint, dist):
    """The classes the train statistics keep rows for (those this rank's shard holds as
    targets; None: all V) and the passes over the data that collect the layers ``todo``
    in the memory free on this rank's device (every rank the same passes): a
    checkpoint's pass first and whole, then the fewest that fit
    (:func:`lingcollapse.collect.passes.plan`)."""
    device, seq_len = dist.device, tokens.shape[1]
    train = cfg.split == "train"
    classes = passes.target_classes(tokens, rows, model.vocab_size) if train else None
    batch = min(cfg.batch_size, max(len(rows), 1))
    resumed = _checkpoint_layers(partial, fingerprint, layers)
    count = None if classes is None else classes.numel()
    free = memory.available_bytes(device)
    free, count, resumed = passes.agree(dist, free, count, resumed)
    _check_memory(cfg, model, layers, batch, seq_len, device, free, count)
    return classes, passes.plan(
        ModelShape.of(model.model),
        todo,
        resumed,
        batch,
        seq_len,
        free,
        device,
        split=cfg.split,
        hidden_states=_hidden_states(model, layers),
        covariance=cfg.covariance,
        logits=not model.body_only,
        rows=count,
    )


def _hidden_states(model: EmbeddingModel, layers) -> int:
    """Block outputs a forward pass keeps: all of them come back for any inner layer."""
    return 0 if layers == ["last"] else model.num_layers + 1


def _check_memory(
    cfg: CollectConfig,
    model: EmbeddingModel,
    layers,
    batch,
    seq_len,
    device,
    free: int,
    rows: int | None = None,
):
    """The statistics of one layer (of ``rows`` classes) and one batch must fit beside
    the loaded model (upper bounds from :mod:`lingcollapse.memory`), else one error
    naming what to lower; more layers than fit together are collected in several
    passes. The batch is never lowered for the user: it is part of the resume
    fingerprint, and a forward pass can differ in its last bits with the batch's shape."""
    shape = ModelShape.of(model.model)
    hidden = _hidden_states(model, layers)

    def need(b: int) -> int:
        return collect_work_bytes(
            shape,
            b,
            seq_len,
            cfg.split,
            1,
            hidden,
            covariance=cfg.covariance,
            logits=not model.body_only,
            rows=rows,
        )

    if need(batch) <= free:
        return
    low, high = 0, batch - 1  # the largest batch that fits, by bisection
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if need(mid) <= free else (low, mid - 1)
    others = [
        *(["use --dtype bf16"] if cfg.dtype == "float32" else []),
        *(["use --device cpu"] if device.type == "cuda" else []),
        *([f"leave {device} room with --max-memory"] if cfg.device_map else []),
    ]
    fix = f"lower --batch-size (e.g. {low})" if low else " or ".join(others) or "free memory"
    what = f"a batch of {batch} × {seq_len:,} tokens"
    if len(layers) > 1:
        what += " with the statistics of one layer"
    memory.check_fits(need(batch), device, what, fix, free)


@contextlib.contextmanager
def _out_of_memory(cfg: CollectConfig, device, seq_len: int, partial: Path):
    """An allocation that fails in spite of the check is one error line too, naming the
    option to lower; the last checkpoint is left as it was."""
    try:
        yield
    except (RuntimeError, MemoryError) as err:
        if not is_out_of_memory(err):
            raise
        fix = f"lower --batch-size (e.g. {cfg.batch_size // 2})" if cfg.batch_size > 1 else ""
        fix = fix or ("use --dtype bf16" if cfg.dtype == "float32" else "free memory")
        saved = _saved_cursor(partial)
        if saved:
            fix += (
                f" (the checkpoint {partial} at sequence {saved} resumes only with "
                f"--batch-size {cfg.batch_size}: delete it, or free memory and re-run)"
            )
        raise UserError(
            f"out of memory on {device} in a batch of {cfg.batch_size} × {seq_len:,} tokens: {fix}"
        ) from None


def _saved_cursor(partial: Path) -> int:
    try:
        with safe_open(str(partial), framework="pt") as f:
            return int((f.metadata() or {}).get("cursor", 0))
    except Exception:  # no checkpoint, or an unreadable one: nothing to resume from
        return 0


# ---------------------------------------------------------------- checkpoints


def _state_tensors(acc) -> dict[str, torch.Tensor]:
    """Train: the shifted sums of the kept rows and the classes they are (a few of V,
    so a checkpoint is as small as the state); validation: the running counters."""
    return acc.state() if isinstance(acc, ClassAccumulator) else acc.state.tensors()


def _load_state(acc, tensors: dict[str, torch.Tensor]):
    """``acc`` continued from a checkpoint's state: a train accumulator is made anew from
    it (its rows are the checkpoint's), a validation one has its counters copied in."""
    if isinstance(acc, ClassAccumulator):
        return ClassAccumulator.from_state(tensors, acc.vocab_size, acc.device)
    for key, value in tensors.items():
        acc.state.__dict__[key].copy_(value)
    return acc


def _checkpoint(partial: Path, fingerprint: str, accs: dict, cursor: int) -> None:
    """The raw accumulator state (not finished moments), so a resumed run continues
    bit for bit, and the layers of the pass; written atomically."""
    tensors = {
        f"{layer}.{key}": t.detach().cpu().contiguous()
        for layer, acc in accs.items()
        for key, t in _state_tensors(acc).items()
    }
    meta = {"fingerprint": fingerprint, "cursor": str(cursor), "layers": _names(accs)}
    meta["sha256"] = _checkpoint_sha256(tensors, meta)
    with atomic_path(partial) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def _names(layers) -> str:
    """A checkpoint's ``layers``: ``["0", "1", "last"]`` as JSON."""
    return json.dumps([str(layer) for layer in layers])


def _unfinished(partial: Path, fingerprint: str, layers, outputs: dict) -> list:
    """The layers still to collect: those without an output of this very configuration
    (an output of another, or a damaged one, is an error). A checkpoint whose layers all
    have their outputs (the run ended between the last file and its removal) is left
    over: removed."""
    todo = []
    for layer, path in outputs.items():
        if path.is_file():  # read whole: a damaged output is reported, not kept
            _check_same(path, load_stats(path).metadata.get("fingerprint"), fingerprint)
        else:
            todo.append(layer)
    if partial.is_file() and not set(_checkpoint_layers(partial, fingerprint, layers)) & set(todo):
        log.info("removing %s: the files of its layers are all written", partial)
        partial.unlink()
    if not todo:
        log.info("%s is complete for this model and data; nothing to do", outputs[layers[-1]])
    return todo


def _checkpoint_layers(partial: Path, fingerprint: str, layers) -> list:
    """The layers of the pass ``partial`` holds ([] without one), read from its metadata
    and checked to be a pass of this job (its contents are checked when it resumes). A
    checkpoint from before there were passes holds every layer of the job."""
    if not partial.is_file():
        return []
    _, meta = _open_checkpoint(partial, tensors=False)
    try:
        names = json.loads(meta["layers"]) if "layers" in meta else [str(x) for x in layers]
        by_name = {str(layer): layer for layer in layers}
        group = [by_name[name] for name in names]
    except (KeyError, TypeError, ValueError):  # names of no layer of this job
        group = None
    found = meta.get("fingerprint") if group else None
    _check_same(partial, found, _pass_fingerprint(fingerprint, group or [], layers))
    return group


def _resume(partial: Path, fingerprint: str, group: list, accs: dict) -> int:
    """The sequence to start the pass of ``group`` from: its checkpoint's cursor, with the
    state restored into ``accs``, or 0. A checkpoint of another pass (a rank that got
    ahead of rank 0 before an interruption) is not this pass's: it starts from 0."""
    if not partial.is_file():
        return 0
    tensors, meta = _read_checkpoint(partial)
    if meta.get("layers", _names(group)) != _names(group):
        log.info("%s holds another pass's statistics; this pass starts from 0", partial)
        return 0
    _check_same(partial, meta.get("fingerprint"), fingerprint)
    for layer, acc in list(accs.items()):
        prefix = f"{layer}."
        state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        accs[layer] = _load_state(acc, state)
    cursor = int(meta["cursor"])
    log.info("resuming from %s at sequence %d", partial, cursor)
    return cursor


_REMEDY = "delete it to start the pass over (the same command then starts from 0)"


def _open_checkpoint(partial: Path, tensors: bool = True):
    """A checkpoint's tensors (``{}`` unless asked for) and metadata, as read."""
    try:
        loaded = load_file(str(partial)) if tensors else {}
        with safe_open(str(partial), framework="pt") as f:
            return loaded, f.metadata() or {}
    except Exception as err:  # safetensors raises several types for bad bytes
        raise UserError(
            f"the checkpoint {partial} is unreadable ({first_line(err)}): {_REMEDY}"
        ) from None


def _read_checkpoint(partial: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A checkpoint's tensors and metadata, checked against the SHA-256 it records."""
    remedy = _REMEDY
    tensors, meta = _open_checkpoint(partial)
    if meta.get("sha256") != _checkpoint_sha256(tensors, meta):
        raise UserError(
            f"the checkpoint {partial} is corrupt: its contents do not match the checksum "
            f"in its metadata (a flipped bit or a broken copy): {remedy}"
        )
    return tensors, meta


def _checkpoint_sha256(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> str:
    """Over the state and the cursor: a flipped digit of either resumes wrongly."""
    text = f"{tensors_sha256(tensors)}:{meta.get('fingerprint')}:{meta.get('cursor')}"
    return hashlib.sha256(text.encode()).hexdigest()


def _check_same(path: Path, found: str | None, expected: str) -> None:
    if found != expected:
        raise UserError(
            f"{path} was made by another model, other data or other settings; "
            "pass another --out, or delete it to start over"
        )


def _partial_path(out: str, dist) -> Path:
    out = Path(out)
    suffix = f".rank{dist.rank}-of-{dist.world}" if dist.world > 1 else ""
    return out.with_name(out.name + suffix + ".partial")


def _pass_fingerprint(fingerprint: str, group, layers) -> str:
    """What a pass's checkpoint must match: the job's fingerprint, and the layers of the
    pass when it holds some of the job's (one pass of them all keeps the job's own, so
    checkpoints written before there were passes still resume)."""
    if list(group) == list(layers):
        return fingerprint
    return hashlib.sha256(f"{fingerprint}:{_names(group)}".encode()).hexdigest()


def _fingerprint(cfg: CollectConfig, provenance: dict[str, str], layers) -> str:
    """What must match for a checkpoint or an output to be continued: the provenance (all
    the weights and the whole split, by SHA-256, so a model whose body changed under the
    same name never resumes another's state) and what changes the bits of a resumed pass
    (the batch, the layers collected together, the train stats of the NCC means)."""
    settings = {
        **{k: v for k, v in provenance.items() if k != "data"},  # a moved data dir resumes
        "layers": [str(x) for x in layers],
        "batch_size": cfg.batch_size,
        "train_stats": _train_sha(cfg, layers),
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def _train_sha(cfg: CollectConfig, layers) -> str | None:
    """Of the train stats each layer's decisions use (``--layers 0`` reads only
    ``train.layer00``, so ``--train-stats`` itself need not exist)."""
    if not cfg.train_stats:
        return None
    # streamed: each file is 8·V·d bytes
    return ",".join(file_sha256(layer_path(cfg.train_stats, layer)) for layer in layers)


def _provenance(cfg: CollectConfig, model: EmbeddingModel) -> dict[str, str]:
    """What the numbers of this pass depend on, as string metadata; ``stats
    merge`` compares all of it but the paths (``model`` names, ``data``), and ``layer``,
    added per file. Batch size and device change only rounding: not provenance."""
    provenance = {
        "model": model.name,
        "revision": cfg.revision or "",
        "weights_sha256": model.weights_sha256(),  # all weights, streamed: once per pass
        "data": str(cfg.data),
        **_data_sha256(Path(cfg.data), cfg.split),
        "split": cfg.split,
        "shard": str(Shard.parse(cfg.shard)),  # the job's: all torchrun ranks merged
        "dtype": str(DTYPES[cfg.dtype]).removeprefix("torch."),  # bf16 = bfloat16
    }
    if cfg.split == "train":
        provenance["covariance"] = json.dumps(cfg.covariance)
    else:  # with train_means_sha256, which the validation state carries
        provenance["min_count"] = str(cfg.min_count)
    return provenance


def _data_sha256(data: Path, split: str) -> dict[str, str]:
    """The data's identity: the SHA-256 of ``meta.json`` ("" without one: collect needs
    only the split) and of the split itself, as ``meta.json`` records it where ``data
    prepare`` wrote one (``open_split`` has checked the bytes against it), else streamed."""
    meta_path = data / "meta.json"
    meta = read_json(meta_path, REMAKE) if meta_path.is_file() else {}
    splits = meta.get("splits") if isinstance(meta, dict) else None
    entry = splits.get(split) if isinstance(splits, dict) else None
    recorded = entry.get("sha256") if isinstance(entry, dict) else None
    return {
        "data_meta_sha256": file_sha256(meta_path) if meta_path.is_file() else "",
        "split_sha256": recorded or file_sha256(data / f"{split}.npy"),
    }


def _metadata(cfg: CollectConfig, tokens, provenance: dict[str, str], fingerprint: str) -> dict:
    """String metadata of the output: provenance, the job's counts and the resolved config.
    Nothing time-dependent, so a resumed run writes equal bytes."""
    sequences = len(Shard.parse(cfg.shard).rows(tokens.shape[0]))
    # not "out": equal statistics make equal files wherever they are written
    placed = ("device", "device_map", "max_memory", "offload_folder")  # rounding, at most
    config = {k: v for k, v in asdict(cfg).items() if k not in (*placed, "out")}
    return {
        **provenance,
        "sequences": str(sequences),
        "tokens": str(sequences * (tokens.shape[1] - 1)),
        "fingerprint": fingerprint,
        "config": json.dumps(config, sort_keys=True),
    }
