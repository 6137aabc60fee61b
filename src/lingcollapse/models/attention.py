"""Fused attention for GPT-Neo that keeps its exact semantics.

Hugging Face's GPT-Neo has only an eager attention (and FlashAttention-2 where that is
installed): it materialises the (B, H, T, T) score matrix in float32 and adds a full
(B, 1, T, T) float mask built for every forward. :func:`use_sdpa` swaps each layer for
``F.scaled_dot_product_attention`` with

- ``scale=1.0``: GPT-Neo does not divide the scores by √(d/H) (its initialisation and
  the released checkpoints rely on that);
- ``is_causal`` for the global layers (the flash kernel, no mask at all) and the
  boolean sliding-window mask (window 256, the layer's own buffer) for the local ones;
- a padding mask combined with those when the caller passes one.

The weights are the same tensors, so checkpoints and ``save_pretrained`` output are
unchanged and load into a stock ``GPTNeoForCausalLM``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _sdpa_attn(self, query, key, value, attention_mask=None, head_mask=None):
    """Drop-in for ``GPTNeoSelfAttention._attn``: (B, H, T, d_h) → (B, H, T, d_h).

    transformers before 5 passes a ``head_mask`` as well (always None here: masking
    heads would need the scores, which SDPA never forms)."""
    if head_mask is not None:
        raise ValueError("head_mask needs GPT-Neo's eager attention; load with --attention eager")
    q_len, k_len = query.size(-2), key.size(-2)
    window = self.bias[:, :, k_len - q_len : k_len, :k_len]  # (1, 1, T, T) bool
    causal = self.attention_type == "global" and q_len == k_len
    if attention_mask is None:
        mask = None if causal else window
    elif attention_mask.dtype == torch.bool:  # True: attend
        mask, causal = attention_mask & window, False
    else:  # additive float mask (0 or a large negative)
        mask = attention_mask.masked_fill(~window, torch.finfo(attention_mask.dtype).min)
        mask, causal = mask.to(query.dtype), False
    out = F.scaled_dot_product_attention(
        query,
        key,
        value,
        attn_mask=mask,
        is_causal=causal and mask is None,
        dropout_p=self.attn_dropout.p if self.training else 0.0,
        scale=1.0,  # GPT-Neo's scores are not scaled by 1/√d_h
    )
    return out, None


def use_sdpa(model) -> None:
    """Route every attention layer of a ``GPTNeoForCausalLM`` through SDPA, in place.

    The model then builds no (B, 1, T, T) mask when no padding mask is passed (the
    config's ``sdpa`` mask path), and returns no attention weights.
    """
    from transformers.models.gpt_neo.modeling_gpt_neo import GPTNeoAttention, GPTNeoSelfAttention

    swapped = 0
    for parent in model.modules():
        module = getattr(parent, "attention", None)
        if type(parent) is GPTNeoAttention and type(module) is GPTNeoSelfAttention:
            # transformers before 5 keeps "global"/"local" on the parent only
            module.attention_type = parent.attention_type
            module._attn = _sdpa_attn.__get__(module)
            swapped += 1
    if swapped:
        # only the mask builder reads this after construction; it is not serialised
        model.config._attn_implementation = "sdpa"
