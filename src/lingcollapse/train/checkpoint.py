"""Training checkpoints: complete, checksummed, atomic as a whole, and free of pickle.

A checkpoint is a directory ``RUN/checkpoint/step-NNNNNNNN/`` holding

- ``model.safetensors``: the weights (tied embeddings handled by ``save_model``);
- ``optimizer.safetensors``: AdamW's moments and step counts, and the RNG states;
- ``state.json``: the step, the run's config, the optimizer's hyper-parameters, the
  scheduler's state and the SHA-256 of both tensor files.

It is written under a hidden temporary name, fsynced, and renamed into place, so after
a crash (even ``kill -9``) a ``step-*`` directory is either complete or absent. The two
newest are kept: if the newest is found corrupt on resume, the error names it and the
one before it is still there to resume from.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from lingcollapse.errors import UserError
from lingcollapse.faults import point
from lingcollapse.io import discard_dir, file_sha256, fsync, usual_mode

KEEP = 2
_RNG = "rng/"


def _optimizer_tensors(optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """AdamW's state as flat tensors ``"{param}/{name}"`` plus its JSON-able groups."""
    state = optimizer.state_dict()
    tensors = {
        f"{index}/{name}": value.detach().contiguous().cpu()
        for index, slots in state["state"].items()
        for name, value in slots.items()
    }
    return tensors, {"param_groups": state["param_groups"]}


def _rng_tensors() -> dict[str, torch.Tensor]:
    tensors = {_RNG + "cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"{_RNG}cuda{i}"] = s
    return tensors


def save(
    ckpt_root: Path, step: int, model, optimizer, schedule, config: dict, extra: dict | None = None
) -> Path:
    """Write checkpoint ``step`` atomically; drop all but the newest :data:`KEEP`.
    ``extra``: more of the loop's state (JSON), returned in the state as ``extra``."""
    final = ckpt_root / f"step-{step:08d}"
    tmp = ckpt_root / f".step-{step:08d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_model(model, str(tmp / "model.safetensors"))
    tensors, groups = _optimizer_tensors(optimizer)
    save_file({**tensors, **_rng_tensors()}, str(tmp / "optimizer.safetensors"))
    state = {
        "step": step,
        "config": config,
        "optimizer": groups,
        "schedule": schedule.state_dict(),
        "extra": extra or {},
        "sha256": {
            name: file_sha256(tmp / name) for name in ("model.safetensors", "optimizer.safetensors")
        },
    }
    (tmp / "state.json").write_text(json.dumps(state, indent=2) + "\n")
    usual_mode(tmp)  # safetensors writes 0600
    for name in ("model.safetensors", "optimizer.safetensors", "state.json"):
        fsync(tmp / name)
    if final.exists():  # a run killed after this rename wrote it before
        discard_dir(final)
    point(f"write:{final}")
    os.replace(tmp, final)
    fsync(ckpt_root)
    point(f"wrote:{final}")
    for old in _steps(ckpt_root)[:-KEEP]:
        discard_dir(old)
    for leftover in ckpt_root.glob(".*.tmp"):  # of runs killed mid-write or mid-delete
        if leftover != tmp:
            shutil.rmtree(leftover, ignore_errors=True)
    return final


def _steps(ckpt_root: Path) -> list[Path]:
    if not ckpt_root.is_dir():
        return []
    return sorted(p for p in ckpt_root.glob("step-*") if p.is_dir())


def latest(ckpt_root: Path) -> tuple[Path, dict] | None:
    """The newest checkpoint and its state, verified; ``None`` when there is none."""
    steps = _steps(ckpt_root)
    if not steps:
        return None
    path = steps[-1]
    fix = (
        f"delete {path} to resume from the checkpoint before it"
        if len(steps) > 1
        else f"delete {path} to start this run again"
    )
    try:
        state = json.loads((path / "state.json").read_text())
        expected = state["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"checkpoint {path} is unreadable (state.json); {fix}") from None
    for name, digest in expected.items():
        if not (path / name).is_file() or file_sha256(path / name) != digest:
            raise UserError(f"checkpoint {path / name} is corrupt (SHA-256 mismatch); {fix}")
    return path, state


def restore(path: Path, state: dict, model, optimizer, schedule) -> int:
    """Load a verified checkpoint into the model, optimizer, scheduler and RNGs."""
    load_model(model, str(path / "model.safetensors"))
    tensors = load_file(str(path / "optimizer.safetensors"))
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if not key.startswith(_RNG):
            index, name = key.split("/", 1)
            slots.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": slots, **state["optimizer"]})
    schedule.load_state_dict(state["schedule"])
    torch.set_rng_state(tensors[_RNG + "cpu"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith(_RNG + "cuda")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    return int(state["step"])
