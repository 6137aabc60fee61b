"""The family matrix: tiny models of eleven Hugging Face families (and variants whose head
input or logits differ) through ``lingcollapse collect``, against the model itself.

For each: the train statistics equal a float64 brute force on the input of
``get_output_embeddings()`` (read with a forward pre-hook, the definition of the context
embedding); the validation loss is the model's own ``model(ids, labels=ids).loss`` and
the accuracy its own argmax's; the NC4 agreement equals the brute force "argmax over the
kept classes of the model's logits (soft-capped or scaled as the model does it) ==
nearest train mean in float64". Families that lingcollapse cannot read are one error.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lingcollapse.cli import main
from lingcollapse.collect.model import embedding_model, load_model
from lingcollapse.errors import UserError
from lingcollapse.memory import ModelShape
from lingcollapse.metrics.classifier import logit_transform, output_layer
from lingcollapse.models import registry
from lingcollapse.stats.classes import class_stats
from lingcollapse.stats.files import load_stats
from lingcollapse.stats.validation import LogitTransform, ValidationAccumulator
from lingcollapse.train.loop import _Objective
from test_collect import model_forward
from test_stats import brute
from tiny import MATRIX, VOCAB, WIDTH, data_dir, odd_model, tiny_model

# what each family's forward does to W h + b (tests/tiny.py's configs); else the identity
TRANSFORMS = {
    "gemma2": LogitTransform(softcap=0.1),
    "cohere": LogitTransform(scale=3.0),
    "granite": LogitTransform(scale=4.0),  # logits_scaling 0.25 divides
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return data_dir(tmp_path_factory.mktemp("data"))


def forward(model, ids):
    """The head's input (B, T, d), the logits (B, T, V) and the loss of the model itself."""
    h, logits, loss = model_forward(model, ids)
    return h, logits, float(loss)


def cli(*args) -> None:
    assert main([str(a) for a in args]) == 0, args


def refused(capsys, *args) -> str:
    """The one ``error:`` line of a command that must exit 2."""
    capsys.readouterr()
    assert main([str(a) for a in args]) == 2, args
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.parametrize("family", MATRIX)
def test_family_matrix(family, data, tmp_path):
    model = tiny_model(family).eval()
    model.save_pretrained(tmp_path / "model")
    train, val = tmp_path / "train.safetensors", tmp_path / "val.safetensors"
    common = ["--data", data, "--device", "cpu", "--batch-size", 5]
    cli("collect", tmp_path / "model", *common, "--out", train)
    split = ["--split", "validation", "--train-stats", train]
    cli("collect", tmp_path / "model", *common, *split, "--out", val)

    ids = torch.from_numpy(np.load(data / "train.npy")).long()
    h, _, _ = forward(model, ids)
    assert h.shape[-1] == output_layer(model)[0].shape[1]
    counts, means, m2 = brute(
        h[:, :-1].reshape(-1, h.shape[-1]).double(), ids[:, 1:].reshape(-1).numpy(), VOCAB
    )
    stats = load_stats(train)
    assert stats.counts.tolist() == counts.tolist()
    np.testing.assert_allclose(stats.means.numpy(), means, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats.m2.numpy(), m2, rtol=1e-4, atol=1e-6)

    vids = torch.from_numpy(np.load(data / "validation.npy")).long()
    hv, logits, loss = forward(model, vids)
    y = vids[:, 1:].reshape(-1).numpy()  # (n,)
    logits = logits[:, :-1].reshape(y.size, -1).double().numpy()  # (n, V), the model's
    hv = hv[:, :-1].reshape(y.size, -1).double().numpy()  # (n, d)
    kept = np.nonzero(counts >= 1)[0]
    linear = kept[logits[:, kept].argmax(1)]
    ncc = kept[((hv[:, None] - means[kept][None]) ** 2).sum(2).argmin(1)]
    vstats = load_stats(val)
    totals = vstats.totals()
    assert totals["n_val_samples"] == y.size
    assert totals["val_loss"] == pytest.approx(loss, rel=1e-5)
    assert totals["val_acc"] == np.mean(logits.argmax(1) == y)
    assert vstats.agree.tolist() == np.bincount(y, linear == ncc, VOCAB).astype(int).tolist()
    assert vstats.ncc_correct.tolist() == np.bincount(y, ncc == y, VOCAB).astype(int).tolist()
    assert totals["nc4_agreement"] == np.mean(linear == ncc)

    transform = TRANSFORMS.get(family, LogitTransform())
    assert load_model(str(tmp_path / "model")).logits == transform
    assert vstats.metadata.get("logit_transform") == (
        None if transform.identity else str(transform)
    )
    if not transform.identity:  # the transform matters: W h + b alone is another loss
        weight, bias = output_layer(model)
        raw = hv @ weight.double().numpy().T  # (n, V)
        raw += 0 if bias is None else bias.double().numpy()
        raw_loss = np.mean(np.logaddexp.reduce(raw, axis=1) - raw[np.arange(y.size), y])
        assert abs(raw_loss - loss) > 20 * 1e-5 * loss  # 20 × the tolerance


def test_an_opt_350m_like_head_reads_the_projection_and_inner_layers_keep_their_width(
    data, tmp_path, capsys
):
    """OPT-350m: post-norm blocks 16 wide, project_out to the head's 8. The head's input
    is the projection (what the train stats hold); inner layers are collected at their
    own width, and validating them is one error (W reads 8, they are 16)."""
    model = tiny_model("opt-350m-like").eval()
    model.save_pretrained(tmp_path / "model")
    ids = torch.from_numpy(np.load(data / "train.npy")).long()
    h, _, _ = forward(model, ids)
    with torch.no_grad():
        blocks = model.model(input_ids=ids, output_hidden_states=True).hidden_states
    assert h.shape[-1] == WIDTH // 2 and blocks[1].shape[-1] == WIDTH
    out = tmp_path / "stats" / "train.safetensors"
    cli("collect", tmp_path / "model", "--data", data, "--device", "cpu", "--out", out,
        "--layers", "all")  # fmt: skip
    layer1 = load_stats(out.parent / "train.layer01.safetensors")
    _, means, _ = brute(
        blocks[1][:, :-1].reshape(-1, WIDTH).double(), ids[:, 1:].reshape(-1).numpy(), VOCAB
    )
    assert layer1.dim == WIDTH and load_stats(out).dim == WIDTH // 2
    np.testing.assert_allclose(layer1.means.numpy(), means, rtol=1e-5, atol=1e-6)
    val = ["--split", "validation", "--train-stats", out, "--out", tmp_path / "v.safetensors"]
    err = refused(capsys, "collect", tmp_path / "model", "--data", data, "--device", "cpu",
                  "--layers", "1", *val)  # fmt: skip
    assert "layer 1 of" in err and "is 16 wide but its output layer reads 8" in err
    assert not (tmp_path / "v.layer01.safetensors").exists()


def test_logit_transforms_are_read_from_the_config():
    assert logit_transform(tiny_model("gemma2")) == LogitTransform(softcap=0.1)
    assert logit_transform(tiny_model("cohere")) == LogitTransform(scale=3.0)
    assert logit_transform(tiny_model("granite")) == LogitTransform(scale=4.0)
    for family in ("llama", "gemma", "opt"):
        assert logit_transform(tiny_model(family)).identity
    assert logit_transform(torch.nn.Linear(3, 3)).identity  # no config at all
    from transformers import Gemma3Config

    config = Gemma3Config(text_config={"final_logit_softcapping": 7.0})
    holder = torch.nn.Module()
    holder.config = config  # a multimodal model: its text config names the cap
    assert logit_transform(holder) == LogitTransform(softcap=7.0)
    assert str(LogitTransform(scale=0.0625, softcap=30.0)) == "30·tanh(0.0625·z/30)"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_the_load_check_finds_the_transform_in_every_dtype(dtype):
    """The model's logits are checked to the rounding of its dtype: a transform the
    config names is found in half precision too, and a temperature no key names (the
    tempered family divides by 2) is told apart from it in every dtype."""
    for family in ("gemma2", "cohere", "granite", "llama"):
        wrapped = embedding_model(tiny_model(family).to(dtype).eval(), family)
        assert wrapped.logits == TRANSFORMS.get(family, LogitTransform()), family
    tempered = embedding_model(odd_model("tempered").to(dtype), "tempered")
    assert tempered.logits is None and "differ by up to" in tempered.logits_problem


@pytest.mark.parametrize("transform", [LogitTransform(softcap=0.7), LogitTransform(scale=2.5)])
def test_the_accumulator_applies_the_transform_like_a_brute_force(transform, monkeypatch):
    import lingcollapse.stats.validation as validation

    monkeypatch.setattr(validation, "_BLOCK_ENTRIES", 64 * 7)  # many class blocks
    g = torch.Generator().manual_seed(0)
    v, d, n = 30, 6, 400
    h, y = torch.randn(n, d, generator=g, dtype=torch.float64), torch.randint(0, v, (n,))
    train = class_stats(torch.randn(200, d, generator=g, dtype=torch.float64) + 1,
                        torch.randint(0, v - 4, (200,), generator=g), v)  # fmt: skip
    weight, bias = torch.randn(v, d, generator=g, dtype=torch.float64), torch.randn(v)
    acc = ValidationAccumulator(weight, bias.double(), train, transform=transform)
    for part in torch.tensor_split(torch.arange(n), 3):
        acc.update(h[part], y[part])
    z = (h @ weight.T + bias.double()).numpy()
    z = z * transform.scale
    if transform.softcap:
        z = transform.softcap * np.tanh(z / transform.softcap)
    loss = np.logaddexp.reduce(z, axis=1) - z[np.arange(n), y.numpy()]
    kept = np.nonzero(train.counts.numpy() >= 1)[0]
    linear = kept[z[:, kept].argmax(1)]
    ncc = kept[((h.numpy()[:, None] - train.means.numpy()[kept][None]) ** 2).sum(2).argmin(1)]
    totals = acc.state.totals()
    assert totals["val_loss"] == pytest.approx(loss.mean(), rel=1e-12)
    assert totals["val_acc"] == np.mean(z.argmax(1) == y.numpy())
    assert totals["nc4_agreement"] == np.mean(linear == ncc)
    plain = ValidationAccumulator(weight, bias.double(), train)
    plain.update(h, y)
    assert abs(plain.state.totals()["val_loss"] - totals["val_loss"]) > 1e-2


def test_families_whose_head_input_or_logits_cannot_be_read_are_refused(data, tmp_path, capsys):
    """No output layer, or one that never sees every position: one error on load. Logits
    changed after the head in a way no config key names: train stats are fine (the head
    input is found), a validation pass is one error."""
    with pytest.raises(UserError, match=r"saw \(1, 1, 16\) for ids of shape \(1, 8\)"):
        embedding_model(odd_model("last-only"), "last-only")
    with pytest.raises(UserError, match="no output layer"):
        embedding_model(odd_model("headless"), "headless")
    model = odd_model("tempered")
    model.save_pretrained(tmp_path / "tempered")
    loaded = load_model(str(tmp_path / "tempered"))
    assert loaded.logits is None and loaded.body_only
    train = tmp_path / "train.safetensors"
    cli("collect", tmp_path / "tempered", "--data", data, "--device", "cpu", "--out", train)
    val = tmp_path / "val.safetensors"
    err = refused(capsys, "collect", tmp_path / "tempered", "--data", data, "--device", "cpu",
                  "--split", "validation", "--train-stats", train, "--out", val)  # fmt: skip
    assert "not its output layer's W h + b" in err and "differ by up to" in err
    assert not val.exists()


@pytest.mark.parametrize("family", MATRIX)
def test_model_shape_reads_every_family(family):
    model = tiny_model(family)
    shape = ModelShape.of(model)
    # 4d where the config leaves it unset (GPT-Neo, GPT-2; Falcon's ffn_hidden_size)
    inner = 4 * WIDTH if family in ("gpt-neo", "gpt2", "falcon") else 2 * WIDTH
    # the body's 16 for OPT-350m-like too, wider than its head's 8: an upper bound
    assert (shape.vocab, shape.dim, shape.heads, shape.layers) == (VOCAB, WIDTH, 2, 2)
    assert shape.inner == inner, family
    tensors = [*model.parameters(), *model.buffers()]
    assert shape.weights == sum(t.numel() * t.element_size() for t in tensors)
    assert shape.eager_attention == (family in ("gpt-neo", "gemma2"))  # scores (B, H, T, T)


@pytest.mark.parametrize("family", ["mistral", "qwen2", "gemma", "phi3", "opt", "falcon"])
def test_registered_families_train_on_the_models_own_loss(family):
    """``train --family NAME``: the architecture at the asked width × depth with 16 heads
    and no padding row, and train's objective (cross-entropy of the head's W h + b on
    the base model's output) is the model's own loss."""
    model = registry.build(family, 64, 2, 300, 0, max_positions=64)
    config = model.config
    assert type(model).__name__ == registry.FAMILIES[family].model_class
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (
        64, 2, 16,
    )  # fmt: skip
    assert model.get_input_embeddings().padding_idx is None  # every row trains
    assert registry.family_of(config) == family
    ids = torch.randint(0, 300, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        summed, _ = _Objective(model)(ids)
        own = model(input_ids=ids, labels=ids).loss
    assert float(summed) / ids[:, 1:].numel() == pytest.approx(float(own), rel=1e-5)


@pytest.mark.parametrize("family", ["gemma2", "cohere", "granite"])
def test_train_init_from_a_transformed_family_trains_on_its_own_loss(family):
    """Gemma-2 soft-caps its logits, Cohere and Granite scale them: ``train --init`` from
    such a model trains on the model's own loss (the transform applied to W h + b), which
    the raw W h + b would not give (checked, so the test can fail). They are no
    ``--family`` to build from scratch."""
    model = tiny_model(family).eval()
    ids = torch.randint(0, VOCAB, (2, 16), generator=torch.Generator().manual_seed(0))
    objective = _Objective(model)
    with torch.no_grad():
        summed, _ = objective(ids)
        own = model(input_ids=ids, labels=ids).loss
        objective.transform = LogitTransform()  # the raw head
        raw, _ = objective(ids)
    n = ids[:, 1:].numel()
    assert float(summed) / n == pytest.approx(float(own), rel=1e-5)
    assert abs(float(raw) / n - float(own)) > 1e-3
    with pytest.raises(UserError, match=f"unknown model family '{family}'"):
        registry.family(family)
