"""The linear classifier ``W h + b`` (Eq. 1) of a model: its ``lm_head`` weight and bias.

From a safetensors file with ``weight`` (V, d) and optional ``bias`` (V,), from any
Hugging Face causal LM (local dir or hub id), or from a model already in memory (any
``nn.Module`` with ``get_output_embeddings()``, PEFT-wrapped ones included), so tied and
untied heads, with or without bias, are found the same way.

:func:`logit_transform` reads from a model's config what it does to ``W h + b`` before
its softmax (soft-capping, a scale); the classifier itself is ``W`` and ``b`` whatever
comes after it.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor

from lingcollapse.errors import UserError, first_line
from lingcollapse.models.saved import model_dir_of
from lingcollapse.stats.validation import LogitTransform


def load_classifier(
    source: str | os.PathLike | torch.nn.Module | Tensor | tuple,
) -> tuple[Tensor, Tensor | None]:
    """``(weight (V, d), bias (V,) or None)`` in float32 on the CPU.

    ``source``: a safetensors file, a model dir, a run dir or a hub id; or, in memory, a
    model (:func:`output_layer`), a weight tensor (V, d), or a ``(weight, bias)`` pair.
    """
    if isinstance(source, torch.nn.Module):
        weight, bias = output_layer(source)
        return _checked(weight.detach().float().cpu(), _cpu(bias), "the model's output layer")
    if isinstance(source, Tensor | tuple | list):
        weight, bias = (source, None) if isinstance(source, Tensor) else _pair(source)
        return _checked(weight.detach().float().cpu(), _cpu(bias), "the classifier given")
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


def output_layer(model: torch.nn.Module) -> tuple[Tensor, Tensor | None]:
    """The ``(W, b)`` of Eq. 1 that a model's ``get_output_embeddings()`` applies, in the
    model's dtype and device. A plain ``nn.Linear`` gives its tensors; any other head (a
    PEFT LoRA layer, whose ``weight`` lacks the low-rank update) is read off its outputs,
    as an affine map must be: ``b = f(0)``, ``W = (f(I) − f(0))ᵀ`` (one (d + 1) × d batch)."""
    get = getattr(model, "get_output_embeddings", None)
    head = get() if callable(get) else None
    if head is None:
        raise UserError(
            f"{type(model).__name__} has no output layer (get_output_embeddings() is "
            "missing or None): it is not a causal LM"
        )
    if type(head) is torch.nn.Linear:
        bias = None if head.bias is None else head.bias.detach()
        return head.weight.detach(), bias
    return _probe(head)


def logit_transform(model: torch.nn.Module) -> LogitTransform:
    """What ``model``'s config says its forward does to ``W h + b`` before the softmax:
    Gemma-2/3's ``final_logit_softcapping``, Cohere's ``logit_scale`` (a factor),
    Granite's ``logits_scaling`` (a divisor); the identity for a model without a config
    or without these keys. Only a claim: collection checks it against the model's own
    logits on load (:mod:`lingcollapse.collect.model`)."""
    config = getattr(model, "config", None)
    text = getattr(config, "get_text_config", None)
    config = text() if callable(text) else config  # a multimodal model's language half
    cap = _positive(config, "final_logit_softcapping")
    scale = _positive(config, "logit_scale") or 1.0
    divisor = _positive(config, "logits_scaling")
    if divisor is not None:
        scale /= divisor
    return LogitTransform(scale=scale, softcap=cap)


def _positive(config, key: str) -> float | None:
    value = getattr(config, key, None)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        return None  # absent, None (soft-capping off), or no number
    return float(value)


@torch.inference_mode()
def _probe(head: torch.nn.Module) -> tuple[Tensor, Tensor | None]:
    weight = getattr(head, "weight", None)
    if not isinstance(weight, Tensor) or weight.ndim != 2:
        raise UserError(
            f"the output layer {type(head).__name__} has no 2-D weight (V, d): "
            "lingcollapse reads linear output layers only"
        )
    dim = weight.shape[1]
    training = head.training
    head.eval()  # e.g. LoRA dropout off
    try:
        basis = torch.cat([weight.new_zeros(1, dim), torch.eye(dim, dtype=weight.dtype)])
        out = head(basis.to(weight.device))  # (d + 1, V)
    finally:
        head.train(training)
    bias = out[0]
    return (out[1:] - bias).T.contiguous(), None if not bias.any() else bias.clone()


def _pair(source) -> tuple[Tensor, Tensor | None]:
    if len(source) != 2 or not isinstance(source[0], Tensor):
        raise UserError(
            "a classifier in memory is a weight tensor (V, d) or a (weight, bias) pair, "
            "not a sequence of " + str(len(source))
        )
    return source[0], source[1]


def _cpu(bias) -> Tensor | None:
    return None if bias is None else torch.as_tensor(bias).detach().float().cpu()


def _checked(weight: Tensor, bias: Tensor | None, where: str) -> tuple[Tensor, Tensor | None]:
    """The shapes of a classifier given in memory: weight (V, d), bias (V,) or None."""
    if weight.ndim != 2:
        raise UserError(f"{where}: the weight must be 2-D (V, d), not {tuple(weight.shape)}")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise UserError(
            f"{where}: the bias has shape {tuple(bias.shape)}, expected ({weight.shape[0]},)"
        )
    if not torch.isfinite(weight).all() or (bias is not None and not torch.isfinite(bias).all()):
        raise UserError(f"{where} holds NaN or Inf: use the model the stats came from")
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
    if model.get_output_embeddings() is None:
        raise UserError(f"model {source!r} has no output embeddings (lm_head)")
    weight, bias = output_layer(model)
    return weight.float(), None if bias is None else bias.float()
