"""The Python API (`import lingcollapse`): equal to the command line on the same data."""

import copy
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

import lingcollapse as lc
from lingcollapse.cli import main
from lingcollapse.data.tokenizer import train_bpe
from lingcollapse.metrics.names import METRICS
from lingcollapse.stats import class_stats
from lingcollapse.stats.files import save_stats
from lingcollapse.stats.validation import ValidationAccumulator
from tiny import VOCAB, data_dir, save_model, tiny_model

V, D = 30, 6


@pytest.fixture
def files(tmp_path):
    """Train and validation stats of a known geometry, a classifier file."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, V - 4, (800,), generator=g)
    h = torch.randn(800, D, generator=g) + 3 * torch.randn(V, D, generator=g)[y]
    train = class_stats(h, y, V)
    weight, bias = torch.randn(V, D, generator=g), torch.randn(V, generator=g)
    acc = ValidationAccumulator(weight, bias, train)
    acc.update(h[:200], y[:200])
    paths = {k: tmp_path / "run" / "stats" / f"{k}.safetensors" for k in ("train", "validation")}
    paths["train"].parent.mkdir(parents=True)
    save_stats(paths["train"], train, model="toy")
    save_stats(paths["validation"], acc.state)
    paths["classifier"] = tmp_path / "classifier.safetensors"
    save_file({"weight": weight, "bias": bias}, paths["classifier"])
    paths["weight"], paths["bias"] = weight, bias
    return paths


def cli_measure(tmp_path, *args) -> tuple[dict, pd.DataFrame]:
    out = tmp_path / "cli-out"
    assert main(["measure", *map(str, args), "--out", str(out)]) == 0
    saved = json.loads((out / "metrics.json").read_text())
    assert len(saved.pop("content_sha256")) == 64
    return saved, pd.read_parquet(out / "classes.parquet")


def test_import_is_light_and_exports_the_api():
    heavy = "('torch', 'pandas', 'transformers')"
    code = f"import sys, lingcollapse; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"  # the API is imported on first use only
    assert {"load_stats", "measure", "collect_embeddings", "Measurement", "ClassStats",
            "ValidationStats", "__version__"} <= set(lc.__all__)  # fmt: skip
    assert set(lc.__all__) <= set(dir(lc))
    assert lc.Measurement.__module__ == "lingcollapse.metrics.result"
    with pytest.raises(AttributeError, match="no attribute 'mesure'"):
        lc.mesure  # noqa: B018


def test_measure_equals_the_cli_from_files_and_from_objects(files, tmp_path):
    saved, table = cli_measure(
        tmp_path, files["train"], "--validation", files["validation"],
        "--classifier", files["classifier"],
    )  # fmt: skip
    by_path = lc.measure(files["train"], files["validation"], files["classifier"], device="cpu")
    assert "content_sha256" not in by_path.to_dict()
    assert by_path.to_dict() == saved
    pd.testing.assert_frame_equal(by_path.classes, table)
    in_memory = lc.measure(
        lc.load_stats(files["train"]),
        lc.load_stats(files["validation"]),
        classifier=(files["weight"], files["bias"]),
        device="cpu",
    )
    assert in_memory.to_dict() == saved  # the same identity: it comes from the metadata
    pd.testing.assert_frame_equal(in_memory.classes, table)
    assert saved["n_classes"] == 26 and 0 <= saved["nc4_agreement"] <= 1
    # save() writes what the command writes, byte for byte
    metrics_path = in_memory.save(tmp_path / "api-out")[1]
    assert metrics_path.read_bytes() == (tmp_path / "cli-out" / "metrics.json").read_bytes()


def test_measure_of_a_run_dir_finds_its_validation_stats(files, tmp_path):
    saved, _ = cli_measure(tmp_path, files["train"])  # validation found beside it
    m = lc.measure(tmp_path / "run", preset="wu-papyan", device="cpu")
    assert m.to_dict() == saved and "nc4_agreement" in saved and "nc3_duality_mean" not in saved
    assert m.notes == [f"using validation stats {files['validation']}"]
    assert lc.load_stats(tmp_path / "run").n_samples == 800
    assert lc.load_stats(tmp_path / "run", kind="validation").totals()["n_val_samples"] == 200


def test_settings_repr_and_conventions(files):
    train = lc.load_stats(files["train"])  # an object: no validation stats found beside it
    m = lc.measure(
        train, preset="papyan", min_count=30, cdnv_power=2, cdnv_control=True, device="cpu"
    )
    assert m.settings["preset"] == "papyan" and m.settings["centre"] == "weighted"
    assert m.settings["min_count"] == 30 and m["cdnv_power"] == 2.0
    assert m["n_classes"] == int((lc.load_stats(files["train"]).counts >= 30).sum())
    assert m.provenance["model"] == "toy" and m.provenance["kind"] == "train"
    text = repr(m)
    assert text.splitlines()[0].startswith("Measurement: toy · C=")
    assert "  nc1_cdnv " in text and " ↓ " in text.split("nc1_cdnv")[1].splitlines()[0]
    assert "nc1_cdnv_k0" in text and "<table>" in m._repr_html_()
    k0 = lc.measure(train, preset="papyan", min_count=30, device="cpu")  # the preset's k = 0
    assert k0["cdnv_power"] == 0.0 and k0["nc1_cdnv"] == pytest.approx(m["nc1_cdnv_k0"], 1e-12)
    assert k0["nc1_cdnv"] != pytest.approx(m["nc1_cdnv"], rel=1e-3)


@pytest.fixture(scope="module")
def bpe_data(tmp_path_factory):
    """A data dir with a trained BPE tokenizer in tokenizer/ and its packed ids."""
    root = tmp_path_factory.mktemp("bpe")
    words = "the cat sat on a mat and the dog ran to the red ball in a big park".split()
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(words, 12)) for _ in range(200)]
    tok = train_bpe(texts, 300)
    tok.save_pretrained(root / "data" / "tokenizer")
    ids = np.concatenate([tok(t)["input_ids"] + [0] for t in texts]).astype(np.int32)
    seq = 16
    chunks = ids[: len(ids) // seq * seq].reshape(-1, seq)
    np.save(root / "data" / "train.npy", chunks[:40])
    np.save(root / "data" / "validation.npy", chunks[40:50])
    (root / "data" / "meta.json").write_text(json.dumps({"seq_len": seq}))
    return root / "data", tok


def test_tokens_are_decoded_by_the_cli_and_the_api(bpe_data, tmp_path):
    data, tok = bpe_data
    model_dir = save_model(tmp_path / "hf-model", "gpt2", vocab=320)  # no tokenizer files
    stats = tmp_path / "elsewhere" / "stats" / "train.safetensors"
    assert main(["collect", str(model_dir), "--data", str(data), "--out", str(stats),
                 "--device", "cpu"]) == 0  # fmt: skip
    _, table = cli_measure(tmp_path, stats)  # the tokenizer: the data dir's, by provenance
    expected = [tok.decode([i]) for i in table.token_id]
    assert table.token.tolist() == expected and any(len(t) > 1 for t in expected)
    m = lc.measure(stats, device="cpu")
    assert m.classes.token.tolist() == expected
    ids = lc.measure(stats, tokenizer=_Ids(), device="cpu").classes.token
    assert ids.tolist() == [f"<{i}>" for i in table.token_id]  # a tokenizer passed in wins
    # in memory: the model loaded from a dir that holds its tokenizer
    tok.save_pretrained(model_dir)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    batches = [torch.from_numpy(np.load(data / "train.npy")[:8]).long()]
    m = lc.measure(lc.collect_embeddings(model, batches), device="cpu")
    assert m.classes.token.tolist() == [tok.decode([i]) for i in m.classes.token_id]
    assert m["model"] == str(model_dir)


class _Ids:
    def decode(self, ids):
        return f"<{ids[0]}>"


def _load(model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir)


def _batches(path, size):
    rows = np.load(path)
    return [torch.from_numpy(rows[i : i + size]).long() for i in range(0, len(rows), size)]


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_collect_embeddings_equals_the_cli_collect(family, tmp_path):
    data = data_dir(tmp_path / "data")
    model_dir = save_model(tmp_path / "model", family)
    stats = tmp_path / "run" / "stats"
    common = ["--data", str(data), "--batch-size", "5", "--device", "cpu", "--layers", "0,last"]
    train = str(stats / "train.safetensors")
    assert main(["collect", str(model_dir), *common, "--out", train]) == 0
    assert main(["collect", str(model_dir), *common, "--split", "validation",
                 "--train-stats", train,
                 "--out", str(stats / "validation.safetensors")]) == 0  # fmt: skip
    model = _load(model_dir).train()
    got = lc.collect_embeddings(
        model,
        _batches(data / "train.npy", 5),
        validation=_batches(data / "validation.npy", 5),
        layers=[0, "last"],
    )
    assert model.training and all(m.training for m in model.modules())  # its mode restored
    for layer, name in ((0, "train.layer00"), ("last", "train")):
        cli = lc.load_stats(stats / f"{name}.safetensors")
        api = got.train[layer]
        assert torch.equal(api.counts, cli.counts)
        np.testing.assert_allclose(api.means.numpy(), cli.means.numpy(), rtol=0, atol=1e-12)
        np.testing.assert_allclose(api.m2.numpy(), cli.m2.numpy(), rtol=1e-12, atol=1e-12)
        assert api.metadata["layer"] == str(layer) and api.metadata["sequences"] == "24"
    cli_val = lc.load_stats(stats / "validation.safetensors")
    for key in ("val_counts", "agree", "correct", "ncc_correct"):
        assert torch.equal(getattr(got.validation["last"], key), getattr(cli_val, key)), key
    np.testing.assert_allclose(got.validation["last"].loss_sum, cli_val.loss_sum, rtol=1e-12)
    # and measured: the metrics of the command's files, by the API's path
    saved, _ = cli_measure(tmp_path, stats / "train.safetensors", "--classifier", model_dir)
    m = lc.measure(got.train["last"], got.validation["last"], classifier=model, device="cpu")
    for name in METRICS:
        assert (name in saved) == (name in m.to_dict()), name
        if name in saved:
            assert m[name] == pytest.approx(saved[name], rel=1e-9, abs=1e-12), name


def test_validation_against_given_train_stats(tmp_path):
    data = data_dir(tmp_path / "data")
    model = tiny_model("gpt-neo")
    train = lc.collect_embeddings(model, _batches(data / "train.npy", 8))
    val = lc.collect_embeddings(model, _batches(data / "validation.npy", 8), train_stats=train)
    both = lc.collect_embeddings(
        model, _batches(data / "train.npy", 8), validation=_batches(data / "validation.npy", 8)
    )
    assert isinstance(val, lc.ValidationStats) and torch.equal(val.agree, both.validation.agree)
    assert val.totals()["n_val_samples"] == 8 * 19
    assert val.metadata["split"] == "validation" and val.metadata["min_count"] == "1"


def test_masks_and_labels_choose_the_samples(tmp_path):
    model = tiny_model("llama")
    g = torch.Generator().manual_seed(1)
    a = torch.randint(1, VOCAB, (1, 20), generator=g)
    b = torch.randint(1, VOCAB, (1, 12), generator=g)
    padded = torch.cat([a, torch.cat([b, torch.zeros(1, 8, dtype=torch.long)], 1)])  # right pad
    mask = (torch.arange(20) < torch.tensor([[20], [12]])).long()
    masked = lc.collect_embeddings(model, [{"input_ids": padded, "attention_mask": mask}])
    apart = lc.collect_embeddings(model, [a, b])
    assert torch.equal(masked.counts, apart.counts) and masked.n_samples == 19 + 11
    np.testing.assert_allclose(masked.means, apart.means, rtol=1e-5, atol=1e-6)
    assert "sequences" not in masked.metadata and apart.metadata["sequences"] == "2"
    labels = a.clone()
    labels[:, :10] = -100  # targets 10 … 19 only: positions 9 … 18
    some = lc.collect_embeddings(model, [{"input_ids": a, "labels": labels}])
    assert some.n_samples == 10
    assert torch.equal(some.counts, torch.bincount(a[0, 10:], minlength=VOCAB))


def test_bad_inputs_raise_user_errors(files, tmp_path):
    model = tiny_model("gpt2")
    ids = torch.randint(0, VOCAB, (2, 8))
    train = lc.load_stats(files["train"])
    bad = {
        "validation stats as train": (
            lambda: lc.measure(lc.load_stats(files["validation"])),
            "validation statistics given where train statistics belong",
        ),
        "a dict of layers": (lambda: lc.measure({0: train, "last": train}), r"train\[0\]"),
        "a run dir without stats": (lambda: lc.measure(tmp_path), "has no train stats"),
        "a classifier of another width": (
            lambda: lc.measure(train, classifier=torch.randn(V, D + 1)),
            "width 7",
        ),
        "a 1-D classifier": (lambda: lc.measure(train, classifier=torch.randn(V)), "2-D"),
        "min_count 0": (lambda: lc.measure(train, min_count=0), "at least 1"),
        "an unknown preset": (lambda: lc.measure(train, preset="papyn"), "did you mean"),
        "a tokenizer that is none": (lambda: lc.measure(train, tokenizer=42), "not int"),
        "load_stats of another kind": (
            lambda: lc.load_stats(files["train"], kind="validation"),
            "holds train stats where validation",
        ),
        "load_stats kind unknown": (lambda: lc.load_stats(files["train"], kind="val"), "kind"),
        "no model": (lambda: lc.collect_embeddings("gpt2", [ids]), "not str"),
        "no output layer": (
            lambda: lc.collect_embeddings(torch.nn.Linear(3, 3), [ids]),
            "no output layer",
        ),
        "float ids": (lambda: lc.collect_embeddings(model, [ids.float()]), "not integer"),
        "ids outside V": (lambda: lc.collect_embeddings(model, [ids + VOCAB]), "outside"),
        "no batches": (lambda: lc.collect_embeddings(model, []), "no batches"),
        "a dict without input_ids": (
            lambda: lc.collect_embeddings(model, [{"ids": ids}]),
            "without 'input_ids'",
        ),
        "a mask of another shape": (
            lambda: lc.collect_embeddings(
                model, [{"input_ids": ids, "attention_mask": ids[:, :3]}]
            ),
            "must match",
        ),
        "T = 1": (lambda: lc.collect_embeddings(model, [ids[:, :1]]), "T ≥ 2"),
        "both validation modes": (
            lambda: lc.collect_embeddings(model, [ids], validation=[ids], train_stats=train),
            "not both",
        ),
        "train stats of another model": (
            lambda: lc.collect_embeddings(model, [ids], train_stats=train),
            "do not belong to this model",
        ),
        "an unknown layer": (lambda: lc.collect_embeddings(model, [ids], layers=[7]), "range"),
        "an unknown dtype": (lambda: lc.collect_embeddings(model, [ids], dtype="int8"), "dtype"),
    }
    for name, (call, message) in bad.items():
        with pytest.raises(lc.UserError, match=message):
            call()
            pytest.fail(name)


def test_a_lora_model_equals_its_merged_model():
    peft = pytest.importorskip("peft")
    g = torch.Generator().manual_seed(2)
    batches = [torch.randint(0, VOCAB, (4, 20), generator=g) for _ in range(3)]
    val = [torch.randint(0, VOCAB, (4, 20), generator=g) for _ in range(2)]
    base = tiny_model("llama")
    plain = lc.collect_embeddings(copy.deepcopy(base), batches, validation=val)
    config = peft.LoraConfig(
        r=4, target_modules=["q_proj", "v_proj", "lm_head"], init_lora_weights=False
    )
    lora = peft.get_peft_model(base, config)
    merged = copy.deepcopy(lora).merge_and_unload()
    assert type(merged.get_output_embeddings()) is torch.nn.Linear
    got = lc.collect_embeddings(lora, batches, validation=val)
    want = lc.collect_embeddings(merged, batches, validation=val)
    assert torch.equal(got.train.counts, want.train.counts)
    np.testing.assert_allclose(got.train.means, want.train.means, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.train.m2, want.train.m2, rtol=1e-5)
    assert not np.allclose(got.train.means, plain.train.means, rtol=1e-3, atol=1e-4)
    for key in ("val_counts", "correct", "agree"):  # the LoRA'd head decides as the merged
        assert torch.equal(getattr(got.validation, key), getattr(want.validation, key)), key
    np.testing.assert_allclose(got.validation.loss_sum, want.validation.loss_sum, rtol=1e-5)
    assert not np.allclose(got.validation.loss_sum, plain.validation.loss_sum, rtol=1e-3)
    m_lora = lc.measure(got.train, got.validation, classifier=lora, device="cpu")
    m_merged = lc.measure(want.train, want.validation, classifier=merged, device="cpu")
    for name in ("nc1_cdnv", "nc3_duality_mean", "nc3_zhu_error", "nc4_agreement", "val_loss"):
        assert m_lora[name] == pytest.approx(m_merged[name], rel=1e-4, abs=1e-6), name
