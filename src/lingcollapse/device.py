"""Choosing the device: CUDA when present and asked for ("auto"), else the CPU."""

from __future__ import annotations

import torch

from lingcollapse.errors import UserError


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``; under torchrun, ``cuda`` means the
    rank's own GPU (``LOCAL_RANK``)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(
                "--device cuda was asked for but CUDA is not available; use --device cpu"
            )
        try:
            index = torch.device(name).index
        except RuntimeError:
            raise UserError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from None
        return torch.device("cuda", local_rank if index is None else index)
    if name != "cpu":
        raise UserError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N")
    return torch.device("cpu")
