"""The linear classifier ``W h + b`` (Eq. 1) of a model: its ``lm_head`` weight and bias.

From a safetensors file with ``weight`` (V, d) and optional ``bias`` (V,), or from any
Hugging Face causal LM (local dir or hub id), via ``get_output_embeddings()`` so tied
and untied heads, with or without bias, are found the same way.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor

from lingcollapse.errors import UserError, first_line
from lingcollapse.models.saved import model_dir_of


def load_classifier(source: str | os.PathLike) -> tuple[Tensor, Tensor | None]:
    """``(weight (V, d), bias (V,) or None)`` in float32 on the CPU."""
    path = Path(source)
    if path.is_file():
        weight, bias = _from_safetensors(path)
    else:
        path = model_dir_of(path) or path  # a run dir: its model lives in model/
        weight, bias = _from_model(str(path) if path.exists() else str(source))
    if not torch.isfinite(weight).all() or (bias is not None and not torch.isfinite(bias).all()):
        raise UserError(
            f"the classifier {source} holds NaN or Inf: its weights are damaged; use the "
            "model the stats came from"
        )
    return weight, bias


def _from_safetensors(path: Path) -> tuple[Tensor, Tensor | None]:
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
    except Exception as err:
        raise UserError(
            f"cannot read classifier {path}: garbled or truncated safetensors ({first_line(err)})"
        ) from None
    if "weight" not in tensors:
        raise UserError(
            f"classifier file {path} has no 'weight' tensor (it has: "
            f"{', '.join(sorted(tensors)) or 'nothing'}); save lm_head as "
            "{'weight': W, 'bias': b}"
        )
    weight, bias = tensors["weight"], tensors.get("bias")
    if weight.ndim != 2:
        raise UserError(
            f"classifier weight in {path} must be 2-D (V, d), not {tuple(weight.shape)}"
        )
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise UserError(
            f"classifier bias in {path} has shape {tuple(bias.shape)}, expected "
            f"({weight.shape[0]},)"
        )
    return weight.float(), None if bias is None else bias.float()


def _from_model(source: str) -> tuple[Tensor, Tensor | None]:
    from transformers import AutoModelForCausalLM

    from lingcollapse.hub import load_pretrained

    model = load_pretrained(
        AutoModelForCausalLM.from_pretrained, source, "classifier model", dtype=torch.float32
    )
    head = model.get_output_embeddings()
    if head is None:
        raise UserError(f"model {source!r} has no output embeddings (lm_head)")
    bias = getattr(head, "bias", None)
    return head.weight.detach().float(), None if bias is None else bias.detach().float()
