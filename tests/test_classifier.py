"""The classifier of any HF causal LM (tied or not, with or without bias), offline."""

import pytest
import torch
from safetensors.torch import save_file
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from lingcollapse.errors import UserError
from lingcollapse.metrics.classifier import load_classifier


def test_tied_gpt2_from_model_dir(tmp_path):
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2))
    model.save_pretrained(tmp_path / "model")
    weight, bias = load_classifier(tmp_path / "model")
    assert torch.equal(weight, model.transformer.wte.weight.detach())
    assert bias is None
    # a run dir (its model in model/) works too
    weight2, _ = load_classifier(tmp_path)
    assert torch.equal(weight2, weight)


def test_untied_llama_from_model_dir(tmp_path):
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=40,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(tmp_path)
    weight, _ = load_classifier(tmp_path)
    assert torch.equal(weight, model.lm_head.weight.detach())
    assert not torch.equal(weight, model.model.embed_tokens.weight.detach())


def test_safetensors_file_with_bias(tmp_path):
    save_file({"weight": torch.ones(5, 3), "bias": torch.arange(5.0)}, tmp_path / "c.st")
    weight, bias = load_classifier(tmp_path / "c.st")
    assert weight.shape == (5, 3) and bias.tolist() == [0, 1, 2, 3, 4]


def test_offline_hub_id_is_a_clear_error():
    with pytest.raises(UserError, match="cannot be reached"):
        load_classifier("some-org/not-cached-model")
