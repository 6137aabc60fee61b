"""Model dirs that ``train`` writes: stock Hugging Face dirs, atomic and checksummed.

``RUN/model/`` (the trained model) and ``RUN/epoch-E/`` (the model after epoch E) are
each a directory that ``from_pretrained`` loads as it is — safetensors weights, the
model's ``config.json``, the tokenizer's files — plus two files of ours:

- ``eval.json``: the evaluation of that model (``val_loss``, ``val_acc``, ``val_ppl``);
- ``lingcollapse.json``: the model's identity (its authors'-style id, run, epoch, width,
  depth, …) and the SHA-256 of every other file in the dir.

A dir is built under a hidden temporary name, fsynced, and renamed into place whole, so
after a crash (even ``kill -9``) it is complete or absent; one that exists already (a
run killed after writing it, before its training checkpoint) is replaced the same way.
:func:`read_identity` verifies the checksums before anything loads the weights, so a
damaged dir is named in one error line, never measured.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from lingcollapse import faults
from lingcollapse.errors import UserError
from lingcollapse.io import discard_dir, file_sha256, fsync, read_json, to_json, usual_mode

MANIFEST = "lingcollapse.json"
FORMAT = "lingcollapse.model/1"


def write_model_dir(
    final: Path, model, tokenizer: Path | None, evaluation: dict, identity: dict
) -> Path:
    """Write ``model`` (and the tokenizer files in ``tokenizer``) to ``final`` atomically."""
    final = Path(final)
    tmp = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    if tokenizer is not None and tokenizer.is_dir():
        shutil.copytree(tokenizer, tmp, dirs_exist_ok=True)
    (tmp / "eval.json").write_text(to_json(evaluation, indent=2) + "\n")
    files = {p.name: file_sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
    manifest = {"format": FORMAT, **identity, "sha256": files}
    (tmp / MANIFEST).write_text(to_json(manifest, indent=2) + "\n")
    usual_mode(tmp)  # save_pretrained's weights are 0600 (safetensors); others read them too
    for name in [*files, MANIFEST]:
        fsync(tmp / name)
    if final.exists():
        discard_dir(final)
    faults.point(f"write:{final}")
    os.replace(tmp, final)
    fsync(final.parent)
    faults.point(f"wrote:{final}")
    return final


def model_dir_of(source: str | Path) -> Path | None:
    """The Hugging Face model dir a path names: a run dir's ``model/``, or the path itself
    when it holds a config and weights (a model dir, an ``epoch-E/``); None otherwise (a
    hub id, or a dir without weights such as a run of a hub model)."""
    path = Path(source)
    if (path / "model" / "config.json").is_file():  # a run dir: its config.json is the run's
        return path / "model"
    weights = any(path.glob("*.safetensors")) or any(path.glob("pytorch_model*.bin"))
    return path if (path / "config.json").is_file() and weights else None


def read_identity(model_dir: Path, verify: bool = True) -> dict | None:
    """The identity a dir written by :func:`write_model_dir` records, its files checked
    against their SHA-256 (``verify``); None for a dir not written by ``train``."""
    path = Path(model_dir) / MANIFEST
    if not path.is_file():
        return None
    fix = "train the run again (or copy the dir again from where it was made)"
    try:
        manifest = json.loads(path.read_text())
        files = manifest.pop("sha256")
        manifest.pop("format")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise UserError(f"{path} is unreadable or not a model manifest: {fix}") from None
    if verify:
        for name, digest in files.items():
            file = path.parent / name
            if not file.is_file() or file_sha256(file) != digest:
                raise UserError(f"{file} is missing or corrupt (SHA-256 mismatch): {fix}")
    return manifest


def read_evaluation(model_dir: Path) -> dict | None:
    """A model dir's ``eval.json``, if it has one."""
    path = Path(model_dir) / "eval.json"
    return read_json(path, "train the run again") if path.is_file() else None
