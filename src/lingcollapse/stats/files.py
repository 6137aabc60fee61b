"""Stats files (DESIGN §4): safetensors with string metadata, validated on load.

Train stats: ``counts`` int64 (V,), ``means`` float64 (V, d), ``m2`` float64 (V,), optional
``cov_m2`` float64 (d, d). Validation stats: ``val_counts``, ``agree``, ``correct``,
``ncc_correct`` int64 (V,) and ``loss_sum`` float64 (V,). Metadata: ``format`` =
``lingcollapse.stats/1``, ``kind`` = ``train`` | ``validation`` and free-form strings.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any

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
        digest.update(t.view(torch.uint8).numpy() if t.numel() else b"")  # no copy
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
    path = Path(path)
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
    tensors, meta = _read(path)
    expected = meta.get("sha256")
    if expected is not None and tensors_sha256(tensors) != expected:
        raise UserError(
            f"{path} is corrupt: its contents do not match the checksum in its metadata "
            "(a flipped bit or a broken copy); delete it and re-create it with "
            "`lingcollapse collect`, or copy it again"
        )
    if meta.get("format") != FORMAT:
        raise UserError(
            f"{path} is not a lingcollapse stats file (metadata format="
            f"{meta.get('format')!r}, expected {FORMAT!r})"
        )
    found = meta.get("kind")
    if kind is not None and found != kind:
        raise UserError(f"{path} holds {found} stats where {kind} stats are needed")
    if found == "train":
        stats = _train_from(path, tensors, meta)
    elif found == "validation":
        stats = _validation_from(path, tensors, meta)
    else:
        raise UserError(f"{path} has unknown stats kind {found!r} (expected train or validation)")
    return stats.to(device) if isinstance(stats, ClassStats) else stats


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


def merge_stats_files(paths: list[str | os.PathLike]) -> ClassStats | ValidationStats:
    """Merge stats files over disjoint data (all of one kind and shape)."""
    if len(paths) < 1:
        raise UserError("nothing to merge: give at least one stats file")
    merged = load_stats(paths[0])
    for path in paths[1:]:
        other = load_stats(path, kind=merged.metadata["kind"])
        try:
            merged.merge(other)
        except ValueError as err:
            raise UserError(f"cannot merge {path} into {paths[0]}: {err}") from None
        if isinstance(merged, ValidationStats):
            _same_means(paths[0], merged, path, other)
    merged.metadata = _merged_metadata([load_meta(p) for p in paths])
    return merged


def _same_means(path_a, a: ValidationStats, path_b, b: ValidationStats) -> None:
    key = "train_means_sha256"
    if a.metadata.get(key) != b.metadata.get(key):
        raise UserError(
            f"{path_b} was made with other train means than {path_a}: validation "
            "stats merge only over the same train stats"
        )


def load_meta(path: str | os.PathLike) -> dict[str, str]:
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as err:
        raise UserError(f"cannot read {path}: {first_line(err)}") from None


def _merged_metadata(metas: list[dict[str, str]]) -> dict[str, str]:
    """Keep what all inputs agree on; add up sequence and token counts; list the parts."""
    out = {k: v for k, v in metas[0].items() if all(m.get(k) == v for m in metas)}
    for key in ("sequences", "tokens"):
        values = [m.get(key) for m in metas]
        if all(v is not None and v.isdigit() for v in values):
            out[key] = str(sum(int(v) for v in values))
    out.pop("cursor", None)  # a merged file is finished, not resumable
    out["merged_from"] = json.dumps(len(metas))
    return out
