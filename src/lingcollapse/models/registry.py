"""Model families by name: ``lingcollapse train --family NAME`` and the tests' tiny models.

``gpt-neo`` is the paper's architecture (Table 2, :mod:`lingcollapse.models.gpt_neo`).
The others are the same width × depth in the shape of three more Hugging Face causal
LMs, so a study can ask whether collapse depends on the architecture:

- ``gpt2``: learned positions, fused QKV, scaled attention, GELU MLP of 4d;
- ``gpt-neox`` (Pythia's): rotary positions, parallel attention and MLP, untied head;
- ``llama``: rotary positions, RMSNorm, SwiGLU MLP of 4d, untied head;
- ``mistral``: Llama's blocks with sliding-window attention (a window of 4,096: longer
  than any context here, as in Mistral-7B on short texts);
- ``qwen2``: Llama's blocks with biases on q, k and v;
- ``gemma``: GeGLU MLP, RMSNorm of (1 + w), embeddings scaled by √d, tied head;
- ``phi3``: Llama's blocks with fused qkv and gate-up projections;
- ``opt``: learned positions, pre-LayerNorm, ReLU MLP of 4d, biases, tied head;
- ``falcon``: rotary positions, parallel attention and MLP, multi-query attention (one
  key-value head), tied head.

Gemma-2, Cohere and Granite, whose forward transforms the head's logits (soft-capping, a
scale), are no training families: ``train``'s objective is the cross-entropy of the
head's own ``W h + b``. (``collect`` reads them all, transforms included.)

Each builds offline from a config (no download) with 16 heads (fewer for tiny widths),
no dropout, no padding token (its embedding row would never train) and the tokenizer's
vocabulary. Names are case-insensitive, with aliases (``neo``, ``pythia``, ``neox``, …)
and a "did you mean" for a near miss.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lingcollapse.errors import UserError, did_you_mean
from lingcollapse.models.gpt_neo import check_size, gpt_neo_config, heads_for


@dataclass(frozen=True)
class Family:
    name: str
    aliases: tuple[str, ...]
    config: Callable[..., object]  # (width, depth, vocab, positions, eos, **overrides)
    model_class: str  # in transformers


def _gpt_neo(width, depth, vocab, positions, eos, **overrides):
    config = gpt_neo_config(width, depth, vocab, positions, eos, allow_any_size=True)
    config.update(overrides)
    if "num_layers" in overrides or "attention_types" in overrides:  # keep them consistent
        config.attention_layers = config.expand_attention_types_params(config.attention_types)
    return config


def _gpt2(width, depth, vocab, positions, eos, **overrides):
    from transformers import GPT2Config

    return GPT2Config(**{
        "vocab_size": vocab, "n_embd": width, "n_layer": depth, "n_head": heads_for(width),
        "n_positions": positions, "activation_function": "gelu_new",
        "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0,
        "bos_token_id": eos, "eos_token_id": eos, **overrides,
    })  # fmt: skip


def _gpt_neox(width, depth, vocab, positions, eos, **overrides):
    from transformers import GPTNeoXConfig

    return GPTNeoXConfig(**{
        "vocab_size": vocab, "hidden_size": width, "num_hidden_layers": depth,
        "num_attention_heads": heads_for(width), "intermediate_size": 4 * width,
        "max_position_embeddings": positions, "hidden_dropout": 0.0,
        "attention_dropout": 0.0, "bos_token_id": eos, "eos_token_id": eos, **overrides,
    })  # fmt: skip


def _llama(width, depth, vocab, positions, eos, **overrides):
    from transformers import LlamaConfig

    heads = heads_for(width)
    return LlamaConfig(**{
        "vocab_size": vocab, "hidden_size": width, "num_hidden_layers": depth,
        "num_attention_heads": heads, "num_key_value_heads": heads,
        "intermediate_size": 4 * width, "max_position_embeddings": positions,
        "attention_dropout": 0.0, "tie_word_embeddings": False, "bos_token_id": eos,
        "eos_token_id": eos, **overrides,
    })  # fmt: skip


def _llama_like(config_class: str, width, depth, vocab, positions, eos, **overrides):
    """Llama's config keys, shared by Mistral, Qwen2, Gemma and Phi-3: every head its own
    key and value (the paper's GPT-Neo has no grouped-query attention), 4d MLP."""
    import transformers

    heads = heads_for(width)
    return getattr(transformers, config_class)(**{
        "vocab_size": vocab, "hidden_size": width, "num_hidden_layers": depth,
        "num_attention_heads": heads, "num_key_value_heads": heads,
        "head_dim": width // heads, "intermediate_size": 4 * width,
        "max_position_embeddings": positions, "attention_dropout": 0.0,
        "pad_token_id": None, "bos_token_id": eos, "eos_token_id": eos, **overrides,
    })  # fmt: skip


def _mistral(width, depth, vocab, positions, eos, **overrides):
    return _llama_like("MistralConfig", width, depth, vocab, positions, eos, **overrides)


def _qwen2(width, depth, vocab, positions, eos, **overrides):
    return _llama_like("Qwen2Config", width, depth, vocab, positions, eos, **overrides)


def _gemma(width, depth, vocab, positions, eos, **overrides):
    return _llama_like("GemmaConfig", width, depth, vocab, positions, eos, **overrides)


def _phi3(width, depth, vocab, positions, eos, **overrides):
    overrides = {"resid_pdrop": 0.0, "embd_pdrop": 0.0, **overrides}
    return _llama_like("Phi3Config", width, depth, vocab, positions, eos, **overrides)


def _opt(width, depth, vocab, positions, eos, **overrides):
    from transformers import OPTConfig

    return OPTConfig(**{
        "vocab_size": vocab, "hidden_size": width, "word_embed_proj_dim": width,
        "num_hidden_layers": depth, "num_attention_heads": heads_for(width),
        "ffn_dim": 4 * width, "max_position_embeddings": positions, "dropout": 0.0,
        "attention_dropout": 0.0, "pad_token_id": None, "bos_token_id": eos,
        "eos_token_id": eos, **overrides,
    })  # fmt: skip


def _falcon(width, depth, vocab, positions, eos, **overrides):
    from transformers import FalconConfig

    return FalconConfig(**{
        "vocab_size": vocab, "hidden_size": width, "num_hidden_layers": depth,
        "num_attention_heads": heads_for(width), "ffn_hidden_size": 4 * width,
        "max_position_embeddings": positions, "hidden_dropout": 0.0,
        "attention_dropout": 0.0, "bos_token_id": eos, "eos_token_id": eos, **overrides,
    })  # fmt: skip


FAMILIES = {
    f.name: f
    for f in (
        Family("gpt-neo", ("gptneo", "gpt_neo", "neo"), _gpt_neo, "GPTNeoForCausalLM"),
        Family("gpt2", ("gpt-2", "gpt_2"), _gpt2, "GPT2LMHeadModel"),
        Family("gpt-neox", ("gptneox", "gpt_neox", "neox", "pythia"), _gpt_neox,
               "GPTNeoXForCausalLM"),
        Family("llama", ("llama2", "llama3"), _llama, "LlamaForCausalLM"),
        Family("mistral", (), _mistral, "MistralForCausalLM"),
        Family("qwen2", ("qwen", "qwen-2", "qwen_2"), _qwen2, "Qwen2ForCausalLM"),
        Family("gemma", (), _gemma, "GemmaForCausalLM"),
        Family("phi3", ("phi-3", "phi_3"), _phi3, "Phi3ForCausalLM"),
        Family("opt", (), _opt, "OPTForCausalLM"),
        Family("falcon", (), _falcon, "FalconForCausalLM"),
    )
}  # fmt: skip
_BY_NAME = {alias: f for f in FAMILIES.values() for alias in (f.name, *f.aliases)}


def family(name: str) -> Family:
    """The family called ``name`` (or one of its aliases), or a did-you-mean error."""
    found = _BY_NAME.get(name.lower())
    if found is None:
        hint = did_you_mean(name.lower(), _BY_NAME, lambda alias: _BY_NAME[alias].name)
        raise UserError(f"unknown model family {name!r}: use one of {', '.join(FAMILIES)}{hint}")
    return found


def resolve_name(name: str) -> str:
    """A family's canonical name: the registry's for its names and aliases, else the
    Hugging Face ``model_type`` as written (``mistral``), for models trained from --init."""
    found = _BY_NAME.get(name.lower())
    return found.name if found else name.lower().replace("_", "-")


def family_of(config) -> str:
    """The family of a Hugging Face model config (``model_type`` ``gpt_neo`` → ``gpt-neo``)."""
    return resolve_name(str(getattr(config, "model_type", "") or "unknown"))


def build(
    name: str,
    width: int,
    depth: int,
    vocab_size: int,
    seed: int,
    *,
    max_positions: int = 2048,
    eos_token_id: int = 0,
    allow_any_size: bool = False,
    **overrides,
):
    """A freshly initialised model of family ``name``; the seed fixes the initialisation.
    ``overrides`` go into its config (e.g. ``num_heads=2`` for a tiny test model)."""
    import torch
    import transformers

    fam = family(name)
    check_size(width, depth, allow_any_size)
    positions = max(max_positions, 2048)  # at least GPT-Neo's 2,048 (Table 2)
    config = fam.config(width, depth, vocab_size, positions, eos_token_id, **overrides)
    torch.manual_seed(seed)
    return getattr(transformers, fam.model_class)(config)
