"""The optimizer, schedule and clipping of ``transformers.Trainer`` (Appendix C).

The paper trained with ``run_clm.py``, i.e. the Hugging Face ``Trainer`` with default
``TrainingArguments``, and so do we, piece by piece from the library itself:

- AdamW with β = (0.9, 0.999), ε = 1e-8 (``adam_beta1``, ``adam_beta2``,
  ``adam_epsilon``), fused (the Trainer's default ``optim`` is ``adamw_torch_fused`` on
  torch ≥ 2.8);
- weight decay only on the parameters ``Trainer.get_decay_parameter_names`` returns for
  the model: biases and normalisation weights are left undecayed. This matters here:
  decaying ``ln_f.weight`` shrinks the very embeddings that are measured, and CDNV
  (k = 2) is not scale-invariant;
- the global gradient norm clipped to ``max_grad_norm`` (default 1.0; 0 turns it off)
  before every step, as ``Trainer._clip_grad_norm`` does;
- ``get_linear_schedule_with_warmup``: linear warm-up over ``warmup_steps`` (default 0),
  then linear decay to 0 at the last step.
"""

from __future__ import annotations

import torch

BETAS = (0.9, 0.999)  # TrainingArguments.adam_beta1, adam_beta2
EPS = 1e-8  # TrainingArguments.adam_epsilon


def decay_parameter_names(model: torch.nn.Module) -> list[str]:
    """The names of the parameters the Trainer decays, from the Trainer itself.

    ``get_decay_parameter_names`` reads nothing of the Trainer but the model (it filters
    ``nn.LayerNorm`` modules and names with ``bias``/``norm`` patterns that have changed
    across transformers versions), so it is called unbound rather than re-written here.
    """
    from transformers import Trainer

    return list(Trainer.get_decay_parameter_names(None, model))


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups as ``Trainer.create_optimizer`` makes them: decayed, then not."""
    decayed = set(decay_parameter_names(model))
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return [
        {"params": [p for n, p in named if n in decayed], "weight_decay": weight_decay},
        {"params": [p for n, p in named if n not in decayed], "weight_decay": 0.0},
    ]


def undecayed_names(model: torch.nn.Module) -> list[str]:
    """The trainable parameters left undecayed (recorded in the run's ``config.json``)."""
    decayed = set(decay_parameter_names(model))
    return [n for n, p in model.named_parameters() if p.requires_grad and n not in decayed]


def adamw(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """The Trainer's default optimizer (``adamw_torch_fused``) over its two groups."""
    return torch.optim.AdamW(
        parameter_groups(model, weight_decay), lr=lr, betas=BETAS, eps=EPS, fused=True
    )


def linear_schedule(optimizer, warmup_steps: int, total_steps: int):
    """The Trainer's default ``lr_scheduler_type="linear"``."""
    from transformers import get_linear_schedule_with_warmup

    return get_linear_schedule_with_warmup(optimizer, warmup_steps, total_steps)


def clip_gradients(model: torch.nn.Module, max_grad_norm: float) -> torch.Tensor | None:
    """Clip the global gradient norm in place (0: off); returns the norm before clipping."""
    if max_grad_norm <= 0:
        return None
    return torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
