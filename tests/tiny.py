"""Tiny causal LMs of four families, built offline from configs, and tiny data dirs."""

from __future__ import annotations

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


def tiny_model(family: str, vocab: int = VOCAB, width: int = WIDTH, layers: int = 2, seed=0):
    return registry.build(family, width, layers, vocab, seed, allow_any_size=True, **TINY[family])


FAMILIES = list(registry.FAMILIES)


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
