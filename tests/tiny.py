"""Tiny causal LMs built offline from configs, and tiny data dirs.

``FAMILIES``: four of the registry's trainable families (the paper's GPT-Neo, GPT-2,
GPT-NeoX, Llama), which the suite's parametrised tests run over. ``MATRIX``: those and
seven more Hugging Face families, with variants whose head input or logits differ (the
family matrix of ``tests/test_families.py``).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from lingcollapse.models import registry

VOCAB, WIDTH = 97, 16


# The registry's families at a tiny size: 2 heads, short positions, small MLPs.
TINY = {
    "gpt-neo": {"num_heads": 2, "window_size": 8, "max_position_embeddings": 64},
    "gpt2": {"n_head": 2, "n_positions": 64},
    "gpt-neox": {"num_attention_heads": 2, "intermediate_size": 32, "max_position_embeddings": 64},
    "llama": {
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "intermediate_size": 32,
        "max_position_embeddings": 64,
    },
}


# More families at the same size, straight from transformers' config classes: (config
# class, model class, overrides given the width). bos and eos 0 so no id lies outside V;
# no padding token (Gemma's, Phi-3's, OPT's and Cohere's default one is a real token here).
HF_TINY = {
    "mistral": ("MistralConfig", "MistralForCausalLM", lambda w: {
        "num_key_value_heads": 1, "intermediate_size": 2 * w, "sliding_window": 4}),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", lambda w: {
        "num_key_value_heads": 1, "intermediate_size": 2 * w}),
    "gemma": ("GemmaConfig", "GemmaForCausalLM", lambda w: {
        "num_key_value_heads": 1, "intermediate_size": 2 * w, "head_dim": w // 2}),
    # caps of Gemma-2's size (30, 50) would not bend logits of ±0.3: at 0.1 and 1.0 both
    # soft-cappings change the loss far beyond the tests' tolerance
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM", lambda w: {
        "num_key_value_heads": 1, "intermediate_size": 2 * w, "head_dim": w // 2,
        "sliding_window": 4, "final_logit_softcapping": 0.1, "attn_logit_softcapping": 1.0}),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", lambda w: {
        "num_key_value_heads": 2, "intermediate_size": 2 * w}),
    "opt": ("OPTConfig", "OPTForCausalLM", lambda w: {
        "ffn_dim": 2 * w, "word_embed_proj_dim": w, "dropout": 0.0}),
    # OPT-350m's shape: post-norm blocks (no final norm) and a head of half the width,
    # after project_out: the head's input is not the last block's output
    "opt-350m-like": ("OPTConfig", "OPTForCausalLM", lambda w: {
        "ffn_dim": 2 * w, "word_embed_proj_dim": w // 2, "do_layer_norm_before": False,
        "dropout": 0.0}),
    "falcon": ("FalconConfig", "FalconForCausalLM", lambda w: {"num_kv_heads": 1}),
    # logits scaled after the head: Cohere multiplies, Granite divides
    "cohere": ("CohereConfig", "CohereForCausalLM", lambda w: {
        "num_key_value_heads": 1, "intermediate_size": 2 * w, "logit_scale": 3.0}),
    "granite": ("GraniteConfig", "GraniteForCausalLM", lambda w: {
        "num_key_value_heads": 1, "intermediate_size": 2 * w, "logits_scaling": 0.25}),
}  # fmt: skip


def tiny_model(family: str, vocab: int = VOCAB, width: int = WIDTH, layers: int = 2, seed=0):
    if family in TINY:
        return registry.build(
            family, width, layers, vocab, seed, allow_any_size=True, **TINY[family]
        )
    import torch
    import transformers

    config_class, model_class, overrides = HF_TINY[family]
    config = getattr(transformers, config_class)(**{
        "vocab_size": vocab, "hidden_size": width, "num_hidden_layers": layers,
        "num_attention_heads": 2, "max_position_embeddings": 64, "bos_token_id": 0,
        "eos_token_id": 0, "pad_token_id": None, **overrides(width),
    })  # fmt: skip
    torch.manual_seed(seed)
    return getattr(transformers, model_class)(config)


FAMILIES = list(TINY)  # the suite's parametrised tests: four, not every registered one
MATRIX = [*FAMILIES, *HF_TINY]


@functools.cache
def _odd_classes() -> dict:
    """Made-up families (Llama inside) that collection must refuse, registered with
    transformers' Auto classes so that they save and load by ``model_type``, as a
    ``--trust-remote-code`` family would."""
    from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    class LastOnlyConfig(LlamaConfig):
        model_type = "lingcollapse-last-only"

    class LastOnly(LlamaForCausalLM):
        """Logits of the last position only: its head never sees the others."""

        config_class = LastOnlyConfig

        def forward(self, *args, **kwargs):
            return super().forward(*args, **{**kwargs, "logits_to_keep": 1})

    class HeadlessConfig(LlamaConfig):
        model_type = "lingcollapse-headless"

    class Headless(LlamaForCausalLM):
        """No output layer to find: get_output_embeddings() is None."""

        config_class = HeadlessConfig

        def get_output_embeddings(self):
            return None

    class TemperedConfig(LlamaConfig):
        model_type = "lingcollapse-tempered"

    class Tempered(LlamaForCausalLM):
        """Logits divided by a temperature of 2 that no config key names."""

        config_class = TemperedConfig

        def forward(self, *args, **kwargs):
            out = super().forward(*args, **kwargs)
            out.logits = out.logits / 2
            return out

    classes = {"last-only": LastOnly, "headless": Headless, "tempered": Tempered}
    for cls in classes.values():
        AutoConfig.register(cls.config_class.model_type, cls.config_class, exist_ok=True)
        AutoModelForCausalLM.register(cls.config_class, cls, exist_ok=True)
    return classes


ODD = ("last-only", "headless", "tempered")


def odd_model(kind: str, vocab: int = VOCAB, width: int = WIDTH, seed: int = 0):
    """A tiny model of one of the ``ODD`` families (as the llama of :data:`TINY`)."""
    import torch

    cls = _odd_classes()[kind]
    config = cls.config_class(**{
        "vocab_size": vocab, "hidden_size": width, "num_hidden_layers": 2,
        "intermediate_size": 2 * width, "bos_token_id": 0, "eos_token_id": 0,
        **TINY["llama"],
    })  # fmt: skip
    torch.manual_seed(seed)
    return cls(config).eval()


def save_model(path: Path, family: str = "gpt2", **kwargs) -> Path:
    tiny_model(family, **kwargs).save_pretrained(path)
    return path


def data_dir(path: Path, vocab: int = VOCAB, sequences=(24, 8), seq_len=20, seed=0) -> Path:
    """A packed data dir of DESIGN §2 with Zipf-ish random tokens."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    probs = 1.0 / np.arange(1, vocab + 1)
    probs /= probs.sum()
    for split, s in zip(("train", "validation"), sequences, strict=True):
        tokens = rng.choice(vocab, size=(s, seq_len), p=probs).astype(np.int32)
        np.save(path / f"{split}.npy", tokens)
    (path / "meta.json").write_text(json.dumps({"seq_len": seq_len, "vocab_size": vocab}))
    return path
