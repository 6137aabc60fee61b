"""Tiny causal LMs of four families, built offline from configs, and tiny data dirs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoConfig,
    GPTNeoForCausalLM,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
)

VOCAB, WIDTH = 97, 16


def tiny_model(family: str, vocab: int = VOCAB, width: int = WIDTH, layers: int = 2, seed=0):
    torch.manual_seed(seed)
    if family == "gpt-neo":
        config = GPTNeoConfig(
            vocab_size=vocab,
            hidden_size=width,
            num_layers=layers,
            attention_types=[[["global", "local"], layers // 2]],
            num_heads=2,
            window_size=8,
            max_position_embeddings=64,
            bos_token_id=0,
            eos_token_id=0,
        )
        return GPTNeoForCausalLM(config)
    if family == "gpt2":
        return GPT2LMHeadModel(
            GPT2Config(
                vocab_size=vocab,
                n_embd=width,
                n_layer=layers,
                n_head=2,
                n_positions=64,
                bos_token_id=0,
                eos_token_id=0,
            )
        )
    if family == "gpt-neox":
        return GPTNeoXForCausalLM(
            GPTNeoXConfig(
                vocab_size=vocab,
                hidden_size=width,
                num_hidden_layers=layers,
                num_attention_heads=2,
                intermediate_size=32,
                max_position_embeddings=64,
                bos_token_id=0,
                eos_token_id=0,
            )
        )
    if family == "llama":
        return LlamaForCausalLM(
            LlamaConfig(
                vocab_size=vocab,
                hidden_size=width,
                intermediate_size=32,
                num_hidden_layers=layers,
                num_attention_heads=2,
                num_key_value_heads=2,
                max_position_embeddings=64,
                tie_word_embeddings=False,
                bos_token_id=0,
                eos_token_id=0,
            )
        )
    raise ValueError(family)


FAMILIES = ["gpt-neo", "gpt2", "gpt-neox", "llama"]


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
