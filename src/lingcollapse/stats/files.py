"""Stats files: safetensors with string metadata, validated on load.

Train stats: ``counts`` int64 (V,), ``means`` float64 (V, d), ``m2`` float64 (V,), optional
``cov_m2`` float64 (d, d). Validation stats: ``val_counts``, ``agree``, ``correct``,
``ncc_correct`` int64 (V,) and ``loss_sum`` float64 (V,). Metadata: ``format`` =
``lingcollapse.stats/1``, ``kind`` = ``train`` | ``validation`` and free-form strings;
``collect`` adds the provenance that :func:`merge_stats_files` checks (model, layer, split,
data, shard and settings), which
other tools' files need not carry: only merging requires it.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from lingcollapse.errors import UserError, first_line
from lingcollapse.io import atomic_path
from lingcollapse.stats.classes import ClassStats
from lingcollapse.stats.validation import VALIDATION_KEYS, ValidationStats

FORMAT = "lingcollapse.stats/1"
# The project's other artifacts, so passing one where stats belong says so by name.
OTHER_KINDS = (".json", ".parquet", ".csv", ".npy", ".toml", ".txt", ".jsonl")

_TRAIN_SCHEMA = {"counts": (torch.int64, 1), "means": (torch.float64, 2), "m2": (torch.float64, 1)}
_VALIDATION_SCHEMA = {
    key: (torch.float64 if key == "loss_sum" else torch.int64, 1) for key in VALIDATION_KEYS
}


def save_stats(
    path: str | os.PathLike, stats: ClassStats | ValidationStats, **metadata: Any
) -> None:
    """Write ``stats`` atomically (temporary file, then rename) with string metadata."""
    if isinstance(stats, ClassStats):
        tensors = {"counts": stats.counts, "means": stats.means, "m2": stats.m2}
        if stats.cov_m2 is not None:
            tensors["cov_m2"] = stats.cov_m2
        kind = "train"
    else:
        tensors, kind = stats.tensors(), "validation"
    meta = {**stats.metadata, **{k: _to_str(v) for k, v in metadata.items()}}
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta.update(format=FORMAT, kind=kind, sha256=tensors_sha256(tensors))
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
        _sort_metadata(tmp)


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the tensors' names, shapes, dtypes and bytes, in name order: stored
    in the metadata so a truncated or bit-flipped file is detected on load."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        # the bytes as a view, no copy (reshape: a 0-d tensor cannot change its dtype)
        digest.update(t.reshape(-1).view(torch.uint8).numpy() if t.numel() else b"")
    return digest.hexdigest()


def _sort_metadata(path: Path) -> None:
    """Rewrite the header with metadata keys sorted, so equal stats give equal bytes.

    safetensors writes metadata in hash-map order, which changes from process to
    process; a resumed run must end with the very file an uninterrupted run writes.
    The reordered header has the same length, so it is rewritten in place.
    """
    with open(path, "r+b") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        raw = f.read(size)
        header = json.loads(raw)
        header["__metadata__"] = dict(sorted(header.get("__metadata__", {}).items()))
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
        if len(text) > size:  # cannot happen for a reordering; keep the original then
            return
        f.seek(8)
        f.write(text.ljust(size, b" "))


def _to_str(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def load_stats(
    path: str | os.PathLike, kind: str | None = None, device: str | torch.device = "cpu"
) -> ClassStats | ValidationStats:
    """Read and validate a stats file; every defect is a :class:`UserError` that says
    what is wrong with which file and how to get a good one."""
    path = _stats_path(path, kind or "train")
    tensors, meta = _read(path)
    expected = meta.get("sha256")
    if expected is not None and tensors_sha256(tensors) != expected:
        raise UserError(
            f"{path} is corrupt: its contents do not match the checksum in its metadata "
            "(a flipped bit or a broken copy); delete it and re-create it with "
            "`lingcollapse collect`, or copy it again"
        )
    if _check_kind(path, meta, kind) == "train":
        stats = _train_from(path, tensors, meta)
    else:
        stats = _validation_from(path, tensors, meta)
    return stats.to(device) if isinstance(stats, ClassStats) else stats


def stats_path(path: str | os.PathLike, split: str = "train") -> Path:
    """The stats file that ``path`` stands for: a file (or a missing path) as it is; a run
    dir, a run's ``epoch-E/`` or any model dir collected as a sweep collects it, for its
    ``stats/{split}.safetensors``. A directory without them is a :class:`UserError` that
    names the file looked for and the ``lingcollapse collect`` command that makes it."""
    path = Path(path)
    if not path.is_dir():
        return path
    found = path / "stats" / f"{split}.safetensors"
    if found.is_file():
        return found
    if (path / "train.npy").is_file() or (path / "validation.npy").is_file():
        raise UserError(
            f"{path} is a data dir, not stats: collect them from it with `lingcollapse collect "
            f"MODEL --data {path} --out RUN/stats/train.safetensors`"
        )
    if path.name == "stats" or (path / f"{split}.safetensors").is_file():
        raise UserError(
            f"{path} is a directory: give a stats file in it, e.g. "
            f"{path / f'{split}.safetensors'}, or the run dir {path.parent}"
        )
    model = path if (path / "model").is_dir() or (path / "config.json").is_file() else "MODEL"
    make = f"lingcollapse collect {model} --data DATA_DIR"
    if split == "validation":
        make += f" --split validation --train-stats {path / 'stats' / 'train.safetensors'}"
    raise UserError(f"{path} has no {split} stats: expected {found}; make them with "
                    f"`{make} --out {found}`")  # fmt: skip


def _stats_path(path: str | os.PathLike, split: str = "train") -> Path:
    """``path`` as a file that may be stats: not missing, a directory or another artifact
    (a run dir stands for its ``stats/{split}.safetensors``, :func:`stats_path`)."""
    path = stats_path(path, split)
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "not found"
        raise UserError(
            f"stats file {path} {what}: check the path, or make it with `lingcollapse collect`"
        )
    if path.suffix in OTHER_KINDS:
        raise UserError(
            f"{path} is a {path.suffix} file, not a stats file: pass the .safetensors "
            "made by `lingcollapse collect`"
        )
    return path


def _check_kind(path: Path, meta: dict[str, str], kind: str | None) -> str:
    """The file's kind (train | validation), after checking its format and ``kind``."""
    if meta.get("format") != FORMAT:
        raise UserError(
            f"{path} is not a lingcollapse stats file (metadata format="
            f"{meta.get('format')!r}, expected {FORMAT!r})"
        )
    found = meta.get("kind")
    if kind is not None and found != kind:
        raise UserError(f"{path} holds {found} stats where {kind} stats are needed")
    if found not in ("train", "validation"):
        raise UserError(f"{path} has unknown stats kind {found!r} (expected train or validation)")
    return found


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as err:  # safetensors raises several types for bad bytes
        raise UserError(
            f"cannot read {path}: garbled or truncated safetensors file ({first_line(err)}); "
            "delete it and re-create it with `lingcollapse collect` or `lingcollapse stats merge`"
        ) from None
    return tensors, meta


def _check_schema(path: Path, tensors: dict, schema: dict) -> None:
    missing = sorted(set(schema) - set(tensors))
    if missing:
        raise UserError(
            f"{path} lacks the tensor(s) {', '.join(missing)}; it is not a complete "
            "stats file: re-create it with `lingcollapse collect`"
        )
    for key, (dtype, ndim) in schema.items():
        t = tensors[key]
        if t.dtype != dtype or t.ndim != ndim:
            raise UserError(
                f"{path}: tensor {key!r} is {t.dtype} with {t.ndim} dims, expected "
                f"{dtype} with {ndim}"
            )
    vocab = tensors[next(iter(schema))].shape[0]
    for key in schema:
        if tensors[key].shape[0] != vocab:
            raise UserError(
                f"{path}: tensor {key!r} has {tensors[key].shape[0]} rows but the "
                f"vocabulary has {vocab}: shape mismatch"
            )


def _check_counts(path: Path, counts: torch.Tensor, name: str) -> None:
    if (counts < 0).any():
        bad = int((counts < 0).nonzero()[0, 0])
        raise UserError(
            f"{path}: {name} has negative counts (class {bad}: {int(counts[bad])}); "
            "the file is corrupt: re-create it"
        )


def _train_from(path: Path, tensors: dict, meta: dict) -> ClassStats:
    _check_schema(path, tensors, _TRAIN_SCHEMA)
    dim = tensors["means"].shape[1]
    cov = tensors.get("cov_m2")
    if cov is not None and (cov.dtype != torch.float64 or tuple(cov.shape) != (dim, dim)):
        raise UserError(
            f"{path}: cov_m2 is {tuple(cov.shape)} {cov.dtype}, expected ({dim}, {dim}) float64"
        )
    _check_counts(path, tensors["counts"], "counts")
    return ClassStats(tensors["counts"], tensors["means"], tensors["m2"], cov, dict(meta))


def _validation_from(path: Path, tensors: dict, meta: dict) -> ValidationStats:
    _check_schema(path, tensors, _VALIDATION_SCHEMA)
    for key in VALIDATION_KEYS[:-1]:
        _check_counts(path, tensors[key], key)
    return ValidationStats(*(tensors[key] for key in VALIDATION_KEYS), metadata=dict(meta))


# ---------------------------------------------------------------- merge


class _Same(NamedTuple):
    """One check of ``stats merge``: metadata ``keys`` that must be equal in every input
    of the given ``kinds``, shown as ``show`` when they are not, and how to fix that."""

    name: str
    keys: tuple[str, ...]
    kinds: tuple[str, ...]
    fix: str
    show: tuple[str, ...] = ()


_BOTH = ("train", "validation")
# What the numbers of a stats file depend on, in the order they are compared (dtype before
# the weights: another --dtype loads other weight bytes, and should be named as such).
# Settings that change the statistics only by rounding may differ between shards: batch
# size, device, --checkpoint-every, the other --layers of the pass, and the paths the
# model and the data were read from (the weights and the data are compared by SHA-256).
_SAME = (
    _Same("split", ("split",), _BOTH, "merge the shards of one split"),
    _Same("layer", ("layer",), _BOTH, "merge the shards of one layer (train.layerNN with its own)"),
    _Same("dtype", ("dtype",), _BOTH, "re-collect it with the --dtype of the others"),
    _Same(
        "model",
        ("weights_sha256",),
        _BOTH,
        "re-collect it from the model (the very weights) the others were made with",
        show=("model", "revision", "weights_sha256"),
    ),
    _Same(
        "data",
        ("data_meta_sha256", "split_sha256"),
        _BOTH,
        "re-collect it over the data dir the others were made with",
        show=("data", "data_meta_sha256", "split_sha256"),
    ),
    _Same(
        "covariance setting",
        ("covariance",),
        ("train",),
        "re-collect it with --covariance as the others were (or all without)",
    ),
    _Same(
        "train means",
        ("train_means_sha256",),
        ("validation",),
        "collect every validation shard with one --train-stats (merge the train shards first)",
    ),
    _Same(
        "min-count",
        ("min_count",),
        ("validation",),
        "re-collect it with the --min-count of the others",
    ),
)


def provenance_keys(kind: str) -> list[str]:
    """The metadata ``stats merge`` needs in a file of ``kind``: what it compares, and
    ``shard`` (``I/N``, or ``I/N,I/N,…`` for a merge of shards that is not one shard)."""
    return [key for same in _SAME if kind in same.kinds for key in same.keys] + ["shard"]


def merge_stats_files(paths: list[str | os.PathLike]) -> ClassStats | ValidationStats:
    """Merge the stats of disjoint shards of one (model, layer, split, data, settings),
    checked on their provenance before any tensor is read; anything else (a shard twice,
    overlapping shards, another model …) is a :class:`UserError` naming the check.

    Files are read and merged one at a time (Chan's formula), so memory holds two.
    """
    if len(paths) < 1:
        raise UserError("nothing to merge: give at least one stats file")
    paths = [_stats_path(p) for p in paths]
    metas = [load_meta(p) for p in paths]
    kind = _check_kind(paths[0], metas[0], None)
    for path, meta in zip(paths, metas, strict=True):
        _check_kind(path, meta, kind)
        _check_provenance(path, meta, kind)
    for path, meta in zip(paths[1:], metas[1:], strict=True):
        _check_same(paths[0], metas[0], path, meta, kind)
    spans = _check_disjoint(paths, metas)
    merged = load_stats(paths[0], kind=kind)
    for path in paths[1:]:
        try:
            merged.merge(load_stats(path, kind=kind))
        except ValueError as err:
            raise UserError(f"cannot merge {path} into {paths[0]}: {err}") from None
    merged.metadata = _merged_metadata(paths, metas, spans)
    return merged


def _check_provenance(path: Path, meta: dict[str, str], kind: str) -> None:
    missing = [key for key in provenance_keys(kind) if key not in meta]
    if missing:
        raise UserError(
            f"{path} carries no provenance (its metadata lacks {', '.join(missing)}): made by "
            "another tool or an older lingcollapse, it cannot be checked to be a disjoint shard "
            "of the same model, layer, split, data and settings, so stats merge refuses it; "
            "re-collect it with `lingcollapse collect --shard I/N` (measure reads it as it is)"
        )


def _check_same(path_a: Path, a: dict, path_b: Path, b: dict, kind: str) -> None:
    for same in _SAME:
        if kind in same.kinds and any(a[key] != b[key] for key in same.keys):
            shown = [key for key in same.show or same.keys if a.get(key) != b.get(key)]
            differ = "; ".join(
                f"{key} {_short(a.get(key))} vs {_short(b.get(key))}" for key in shown
            )
            raise UserError(
                f"cannot merge {path_a} and {path_b}: different {same.name} ({differ}): "
                f"stats merge joins only shards of one model, layer, split, data and "
                f"settings; {same.fix}"
            )


def _short(value: str | None) -> str:
    """A metadata value for an error line: a SHA-256 cut to 12 digits."""
    if value is None:
        return "(none)"
    return f"{value[:12]}…" if len(value) == 64 else repr(value)


# A shard I/N is the fraction [I/N, (I+1)/N) of a split's sequences: `collect` takes rows
# floor(S·I/N) … floor(S·(I+1)/N) − 1, so shards disjoint as fractions are disjoint as rows
# for every S, and adjacent ones join into exactly the rows of their union.
_Span = tuple[Fraction, Fraction]


def _spans(path: Path, text: str) -> list[_Span]:
    """``I/N[,I/N…]`` as the fractions of the split it covers."""
    spans = []
    for part in text.split(","):
        index, _, count = part.partition("/")
        if not (index.isdigit() and count.isdigit() and int(index) < int(count)):
            raise UserError(
                f"{path}: metadata shard={text!r} is not I/N[,I/N…] with 0 ≤ I < N; "
                "the file is damaged: re-collect it"
            )
        spans.append((Fraction(int(index), int(count)), Fraction(int(index) + 1, int(count))))
    return spans


def _shard_text(span: _Span) -> str:
    """``I/N`` of a span that is one shard, else ``""``."""
    count = 1 / (span[1] - span[0])
    index = span[0] * count
    ok = count.denominator == 1 and index.denominator == 1
    return f"{index}/{count}" if ok else ""


def _check_disjoint(paths: list[Path], metas: list[dict[str, str]]) -> list[_Span]:
    """Every input's shards, refused if any two inputs share sequences."""
    owned = sorted(
        (span, i)
        for i, (path, meta) in enumerate(zip(paths, metas, strict=True))
        for span in _spans(path, meta["shard"])
    )
    widest = None  # the span seen so far that reaches furthest
    for span, i in owned:
        if widest is not None and span[0] < widest[0][1]:
            _refuse_overlap(paths, metas, widest, (span, i))
        if widest is None or span[1] > widest[0][1]:
            widest = (span, i)
    return [span for span, _ in owned]


def _refuse_overlap(paths, metas, first: tuple[_Span, int], second: tuple[_Span, int]) -> None:
    (span_a, a), (span_b, b) = first, second
    where = f"cannot merge {paths[a]} and {paths[b]}"
    if span_a == span_b:
        raise UserError(
            f"{where}: the same shard twice (both hold shard {_shard_text(span_a)}), whose "
            "samples would count twice; give each shard once"
        )
    raise UserError(
        f"{where}: overlapping shards (shard {metas[a]['shard']} and shard "
        f"{metas[b]['shard']} share sequences): stats merge joins only disjoint shards, such "
        "as the files of --shard 0/N … N−1/N of one N; leave out the file whose sequences "
        "the others already hold"
    )


def _union_text(spans: list[_Span]) -> str:
    """The shards joined, as one ``I/N`` where their union is one shard (all N shards of
    a pass give ``0/1``, as the single pass writes), else each contiguous run that is not
    one shard as its parts in order: e.g. ``0/2,3/4`` for 0/4, 1/4 and 3/4."""
    runs: list[list[_Span]] = []
    for span in sorted(spans):
        if runs and runs[-1][-1][1] == span[0]:
            runs[-1].append(span)
        else:
            runs.append([span])
    texts = []
    for run in runs:
        whole = _shard_text((run[0][0], run[-1][1]))
        texts += [whole] if whole else [_shard_text(span) for span in run]
    return ",".join(texts)


def _merged_metadata(
    paths: list[Path], metas: list[dict[str, str]], spans: list[_Span]
) -> dict[str, str]:
    """The provenance all inputs share (checked equal), the shards they cover, the sums of
    sequences and tokens; other keys only where all inputs agree (e.g. the model's path)."""
    out = {k: v for k, v in metas[0].items() if all(m.get(k) == v for m in metas)}
    for key in ("sequences", "tokens"):
        values = [m.get(key) for m in metas]
        if all(v is not None and v.isdigit() for v in values):
            out[key] = str(sum(int(v) for v in values))
    # what named one collect command: a merged file is finished, not resumable
    for key in ("cursor", "fingerprint", "config"):
        out.pop(key, None)
    parts = sorted(
        span
        for path, meta in zip(paths, metas, strict=True)
        for span in _spans(path, meta.get("merged_from", meta["shard"]))
    )
    out["shard"] = _union_text(spans)
    out["merged_from"] = ",".join(_shard_text(span) for span in parts)
    return out


def load_meta(path: str | os.PathLike) -> dict[str, str]:
    """A stats file's metadata alone (the header: no tensor is read, nothing checked)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as err:  # safetensors raises several types for bad bytes
        raise UserError(
            f"cannot read {path}: garbled or truncated safetensors file ({first_line(err)}); "
            "delete it and re-create it with `lingcollapse collect` or `lingcollapse stats merge`"
        ) from None
