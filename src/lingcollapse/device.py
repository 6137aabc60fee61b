"""Where to run: CUDA when present and asked for ("auto"), else the CPU; and the
rank of this process under ``torchrun`` (one process without it)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as tdist

from lingcollapse.errors import UserError


def check_device_name(name: str) -> None:
    """The spelling of ``--device`` only. Whether CUDA is there is asked where the work
    runs (a SLURM sweep checks its options on a login node without GPUs)."""
    if name in ("auto", "cpu"):
        return
    try:
        ok = name.startswith("cuda") and torch.device(name).type == "cuda"
    except RuntimeError:
        ok = False
    if not ok:
        raise UserError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N")


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``; under torchrun, ``cuda`` means the
    rank's own GPU (``LOCAL_RANK``)."""
    check_device_name(name)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but CUDA is not available; use --device cpu")
    index = torch.device(name).index
    return torch.device("cuda", local_rank if index is None else index)


@dataclass
class Dist:
    """This process's place in a data-parallel job (rank 0 of 1 without ``torchrun``)."""

    rank: int
    world: int
    device: torch.device

    @property
    def tag(self) -> str:
        return f" [rank {self.rank}/{self.world}]" if self.world > 1 else ""


def setup(device: str) -> Dist:
    """Join the ``torchrun`` process group (NCCL on GPUs, gloo on CPUs), if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist(0, 1, pick_device(device))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not tdist.is_initialized():
        tdist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Dist(tdist.get_rank(), tdist.get_world_size(), dev)


def finish(dist: Dist) -> None:
    if dist.world > 1 and tdist.is_initialized():
        tdist.barrier()
        tdist.destroy_process_group()
