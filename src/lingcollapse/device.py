"""Where to run: CUDA when present and asked for ("auto"), else the CPU; and the
rank of this process under ``torchrun`` (one process without it).

A model split over devices (``collect --device-map``) is placed by accelerate within the
budget of ``--max-memory`` (:func:`parse_max_memory`). Under ``torchrun`` each rank then
takes its own group of GPUs (:func:`gpu_group`): with G visible GPUs and P processes on
the node, rank r holds GPUs r·g … (r + 1)·g − 1, g = G // P; in ``--max-memory`` and
``--device cuda:N`` GPU indices count within that group (one command for every rank),
and each rank's share of the host memory is 1/P of what is free.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

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
    gpus: list[int] = field(default_factory=list)  # with a device map: this rank's GPUs
    local_world: int = 1  # processes on this node

    @property
    def tag(self) -> str:
        return f" [rank {self.rank}/{self.world}]" if self.world > 1 else ""


def setup(device: str, device_map: bool = False) -> Dist:
    """Join the ``torchrun`` process group (NCCL on GPUs, gloo on CPUs), if any. With
    ``device_map`` the rank takes its group of GPUs (:func:`gpu_group`) and ``device``
    is only checked: where the statistics live is known once the model is placed
    (:func:`statistics_device`); the group then carries CPU tensors over gloo and CUDA
    ones over NCCL."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0")) if world > 1 else 0
    if device_map:
        check_device_name(device)
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if world > 1 else 1
        gpus = gpu_group(local_rank, local_world, torch.cuda.device_count())
        dist = Dist(0, 1, torch.device("cpu"), gpus, local_world)
        if world == 1:
            return dist
        if not tdist.is_initialized():
            tdist.init_process_group("cpu:gloo,cuda:nccl" if gpus else "gloo")
        dist.rank, dist.world = tdist.get_rank(), tdist.get_world_size()
        return dist
    if world == 1:
        return Dist(0, 1, pick_device(device))
    dev = pick_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not tdist.is_initialized():
        tdist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Dist(tdist.get_rank(), tdist.get_world_size(), dev)


def gpu_group(local_rank: int, local_world: int, visible: int) -> list[int]:
    """The GPUs that process ``local_rank`` of the ``local_world`` on a node splits its
    model over: g = ``visible`` // ``local_world`` consecutive ones from local_rank·g
    (GPUs left over by the division stay unused); none without GPUs."""
    if visible == 0:
        return []
    size = visible // local_world
    if size == 0:
        raise UserError(
            f"torchrun started {local_world} processes on this node but {visible} GPU"
            f"{'s are' if visible > 1 else ' is'} visible: with --device-map each needs a "
            f"GPU of its own; start at most {visible} (--nproc-per-node {visible})"
        )
    return list(range(local_rank * size, (local_rank + 1) * size))


_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_UNITS |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE = re.compile(r"(\d+(?:\.\d*)?)\s*([a-z]*)")
MAX_MEMORY_HELP = "e.g. 0=20GiB,1=40GiB,cpu=64GiB"


def parse_max_memory(spec: str) -> dict[int | str, int]:
    """``--max-memory`` as accelerate's ``max_memory``: ``0=20GiB,1=40GiB,cpu=64GiB`` →
    ``{0: 20·2³⁰, 1: 40·2³⁰, "cpu": 64·2³⁰}`` (bytes). Keys: a GPU index (``0`` or
    ``cuda:0``) or ``cpu``; sizes: a number of bytes or one with B, KB, MB, GB, TB
    (powers of 10) or KiB, MiB, GiB, TiB (powers of 2). Only the spelling is checked here:
    whether the GPUs exist is asked where the work runs."""
    budget: dict[int | str, int] = {}
    for part in spec.split(","):
        key, sep, size = (x.strip() for x in part.partition("="))
        if not sep or not key or not size:
            raise UserError(
                f"--max-memory: {part.strip()!r} is not DEVICE=SIZE ({MAX_MEMORY_HELP})"
            )
        device = _budget_key(key)
        if device in budget:
            raise UserError(f"--max-memory names {key!r} twice: give each device once")
        budget[device] = _bytes(size, key)
    return budget


def _budget_key(key: str) -> int | str:
    name = key.lower()
    if name == "cpu":
        return "cpu"
    index = name.removeprefix("cuda:")
    if index.isdigit():
        return int(index)
    raise UserError(
        f"--max-memory: unknown device {key!r}: use a GPU index (0, 1, … or cuda:0) or cpu "
        f"({MAX_MEMORY_HELP}); layers beyond the budget go to disk only with --offload-folder"
    )


def _bytes(size: str, key: str) -> int:
    match = _SIZE.fullmatch(size.lower())
    if match is None or match[2] not in _UNITS:
        raise UserError(
            f"--max-memory: {size!r} (for {key}) is not a size: write e.g. 20GiB, 500MiB, "
            "16GB or a number of bytes"
        )
    return int(float(match[1]) * _UNITS[match[2]])


# Without --max-memory a map may fill this share of what is free: the rest is left to the
# activations of a batch and the statistics (transformers leaves the same on the CPU).
HEADROOM = 0.9


def group_max_memory(
    budget: dict[int | str, int] | None,
    gpus: list[int],
    free: dict[int | str, int] | None = None,
    local_world: int = 1,
) -> dict[int | str, int]:
    """This rank's ``max_memory`` in global GPU indices: ``budget`` (from
    :func:`parse_max_memory`, GPU keys counted within ``gpus``) or, without one, 90% of
    what is ``free`` ({GPU: bytes, "cpu": bytes}) on its GPUs and of its 1/``local_world``
    share of the host's memory. Devices a given budget does not name are not used."""
    if budget is None:
        free = free_memory(gpus) if free is None else free
        mine: dict[int | str, int] = {gpu: int(HEADROOM * free[gpu]) for gpu in gpus}
        return mine | {"cpu": int(HEADROOM * free["cpu"] / local_world)}
    mine = {}
    for key, size in budget.items():
        if key == "cpu":
            mine["cpu"] = size
        elif key < len(gpus):
            mine[gpus[key]] = size
        else:
            raise UserError(
                f"--max-memory names GPU {key} but {_gpus_here(gpus, local_world)}"
                + ("" if gpus else ": budget cpu only")
            )
    return mine


def free_memory(gpus: list[int]) -> dict[int | str, int]:
    """Bytes free on each of ``gpus`` and on the host (cgroup limits included)."""
    from lingcollapse.memory import available_bytes

    free: dict[int | str, int] = {gpu: available_bytes(torch.device("cuda", gpu)) for gpu in gpus}
    return free | {"cpu": available_bytes("cpu")}


def _gpus_here(gpus: list[int], local_world: int) -> str:
    if not gpus:
        return "no GPU is visible (CUDA is not available)"
    count = f"{len(gpus)} GPU{'s' if len(gpus) > 1 else ''}"
    if local_world > 1:
        return f"each torchrun rank holds {count} (0 … {len(gpus) - 1} within its group)"
    return f"{count} {'are' if len(gpus) > 1 else 'is'} visible (0 … {len(gpus) - 1})"


def statistics_device(
    name: str, output: torch.device, gpus: list[int], local_world: int = 1
) -> torch.device:
    """Where the statistics of a model split over devices live: ``auto`` the device its
    output layer's input comes out on (``output``, so the last layer's embeddings never
    move), ``cpu``, ``cuda`` (that device if a GPU, else the rank's first GPU) or
    ``cuda:N`` (the N-th GPU of the rank's group)."""
    check_device_name(name)
    if name == "auto":
        return output
    if name == "cpu":
        return torch.device("cpu")
    index = torch.device(name).index
    if index is None and output.type == "cuda":
        return output
    index = 0 if index is None else index
    if index >= len(gpus):
        fix = "" if gpus else ": use --device auto or cpu for the statistics"
        raise UserError(f"--device {name} names a GPU but {_gpus_here(gpus, local_world)}{fix}")
    return torch.device("cuda", gpus[index])


def bind(dist: Dist, device: torch.device) -> None:
    """With a device map: the statistics' device becomes the rank's device, and under
    torchrun NCCL's current GPU one of its own group (the statistics', else its first),
    so that no two ranks' collectives meet on one GPU."""
    dist.device = device
    if dist.world > 1 and dist.gpus:
        torch.cuda.set_device(device if device.type == "cuda" else dist.gpus[0])


def finish(dist: Dist) -> None:
    if dist.world > 1 and tdist.is_initialized():
        tdist.barrier()
        tdist.destroy_process_group()
