"""`collect`: any HF causal LM, one pass, validation with NC4, layer-wise, resumable."""

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from lingcollapse.cli import main
from lingcollapse.collect.model import load_model
from lingcollapse.collect.run import CollectConfig, collect
from lingcollapse.io import file_sha256
from lingcollapse.stats.files import load_stats, merge_stats_files, provenance_keys, tensors_sha256
from lingcollapse.stats.validation import means_sha256
from test_stats import brute
from tiny import FAMILIES, VOCAB, data_dir, save_model, tiny_model

BIN = Path(sys.executable).parent


def model_forward(model, ids):
    """The lm_head input (B, T, d) of the full model (the definition of the context
    embedding), its logits (B, T, V) and its own loss."""
    seen = {}
    handle = model.get_output_embeddings().register_forward_pre_hook(
        lambda m, a: seen.setdefault("h", a[0])
    )
    with torch.no_grad():
        out = model(input_ids=ids, labels=ids)
    handle.remove()
    return seen["h"], out.logits, out.loss


def head_inputs(model, ids):
    """The lm_head input of the full model and its loss."""
    h, _, loss = model_forward(model, ids)
    return h, loss


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return data_dir(tmp_path_factory.mktemp("data"))


@pytest.mark.parametrize("family", FAMILIES)
def test_train_and_validation_stats_match_the_model(family, data, tmp_path):
    model_dir = save_model(tmp_path / "model", family)
    model = tiny_model(family).eval()
    loaded = load_model(str(model_dir))
    assert loaded.body_only  # the base model's output is the lm_head input
    train = CollectConfig(
        str(model_dir),
        str(data),
        out=str(tmp_path / "train.safetensors"),
        batch_size=5,
        device="cpu",
    )
    collect(train)
    stats = load_stats(tmp_path / "train.safetensors")
    ids = torch.from_numpy(np.load(data / "train.npy")).long()
    h, _ = head_inputs(model, ids)
    counts, means, m2 = brute(
        h[:, :-1].reshape(-1, h.shape[-1]).double(), ids[:, 1:].reshape(-1).numpy(), VOCAB
    )
    assert stats.counts.tolist() == counts.tolist()
    assert stats.n_samples == ids.shape[0] * (ids.shape[1] - 1)  # N = S(T − 1)
    np.testing.assert_allclose(stats.means.numpy(), means, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats.m2.numpy(), m2, rtol=1e-4, atol=1e-6)

    val = CollectConfig(
        str(model_dir),
        str(data),
        split="validation",
        device="cpu",
        out=str(tmp_path / "val.safetensors"),
        train_stats=str(tmp_path / "train.safetensors"),
    )
    collect(val)
    vstats = load_stats(tmp_path / "val.safetensors")
    vids = torch.from_numpy(np.load(data / "validation.npy")).long()
    _, loss = head_inputs(model, vids)
    totals = vstats.totals()
    assert totals["n_val_samples"] == vids.shape[0] * (vids.shape[1] - 1)
    assert totals["val_loss"] == pytest.approx(float(loss), rel=1e-5)


def test_layerwise_files_and_measure(data, tmp_path, capsys):
    model_dir = save_model(tmp_path / "model", "gpt-neo", layers=2)
    out = tmp_path / "stats" / "train.safetensors"
    assert (
        main(
            [
                "collect",
                str(model_dir),
                "--data",
                str(data),
                "--out",
                str(out),
                "--layers",
                "all",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    names = sorted(p.name for p in out.parent.glob("*.safetensors"))
    assert names == ["train.layer00.safetensors", "train.layer01.safetensors", "train.safetensors"]
    model = tiny_model("gpt-neo").eval()
    ids = torch.from_numpy(np.load(data / "train.npy")).long()
    with torch.no_grad():
        hidden = model.transformer(input_ids=ids, output_hidden_states=True).hidden_states
    layer1 = load_stats(out.parent / "train.layer01.safetensors")
    counts, means, _ = brute(
        hidden[1][:, :-1].reshape(-1, 16).double(), ids[:, 1:].reshape(-1).numpy(), VOCAB
    )
    assert layer1.counts.tolist() == counts.tolist()
    np.testing.assert_allclose(layer1.means.numpy(), means, rtol=1e-5, atol=1e-6)
    assert layer1.metadata["layer"] == "1"
    capsys.readouterr()
    assert (
        main(
            [
                "measure",
                str(out.parent / "train.layer01.safetensors"),
                "--json",
                "--out",
                str(tmp_path / "m"),
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["layer"] == "1"


def test_validation_of_an_inner_layer_reads_only_its_train_stats(data, tmp_path):
    """`--layers 0` writes train.layer00 alone; its validation pass must not need the
    train.safetensors of the last layer, which was never made."""
    model_dir = save_model(tmp_path / "model", "gpt2")
    kw = {"model": str(model_dir), "data": str(data), "device": "cpu", "layers": "0"}
    train = tmp_path / "train.safetensors"
    assert collect(CollectConfig(**kw, out=str(train))) == [tmp_path / "train.layer00.safetensors"]
    out = tmp_path / "val.safetensors"
    val = CollectConfig(**kw, split="validation", train_stats=str(train), out=str(out))
    assert collect(val) == [tmp_path / "val.layer00.safetensors"]
    assert load_stats(tmp_path / "val.layer00.safetensors").totals()["n_val_samples"] > 0


# What a merged file's metadata may differ in from the single pass: the tensors' checksum
# (Chan's merge rounds differently from streaming), and what names one collect command.
MERGE_ONLY = {"sha256", "fingerprint", "config", "merged_from"}


def test_shards_merge_to_the_whole_and_rerun_is_a_no_op(data, tmp_path):
    model_dir = save_model(tmp_path / "model", "gpt2")
    kw = {"model": str(model_dir), "data": str(data), "device": "cpu", "batch_size": 4}
    collect(CollectConfig(**kw, out=str(tmp_path / "whole.safetensors")))
    for i in range(3):
        collect(CollectConfig(**kw, shard=f"{i}/3", out=str(tmp_path / f"s{i}.safetensors")))
    merged = merge_stats_files([tmp_path / f"s{i}.safetensors" for i in (2, 0, 1)])
    whole = load_stats(tmp_path / "whole.safetensors")
    assert torch.equal(merged.counts, whole.counts)
    torch.testing.assert_close(merged.means, whole.means, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(merged.m2, whole.m2, rtol=1e-10, atol=1e-12)
    assert load_stats(tmp_path / "s0.safetensors").n_samples < whole.n_samples
    differ = {
        k
        for k in whole.metadata.keys() | merged.metadata.keys()
        if whole.metadata.get(k) != merged.metadata.get(k)
    }
    assert differ <= MERGE_ONLY, differ
    assert merged.metadata["shard"] == "0/1" and merged.metadata["merged_from"] == "0/3,1/3,2/3"
    # a merged file merges on with the remaining shard, through the command line
    two = tmp_path / "two.safetensors"
    args = [str(tmp_path / "s0.safetensors"), str(tmp_path / "s1.safetensors")]
    assert main(["stats", "merge", *args, "--out", str(two)]) == 0
    assert load_stats(two).metadata["shard"] == "0/3,1/3"  # [0, 2/3) is no shard I/N
    three = tmp_path / "three.safetensors"
    assert (
        main(["stats", "merge", str(two), str(tmp_path / "s2.safetensors"), "--out", str(three)])
        == 0
    )
    again = load_stats(three)
    assert torch.equal(again.counts, whole.counts) and again.metadata["shard"] == "0/1"
    torch.testing.assert_close(again.means, whole.means, rtol=1e-12, atol=1e-12)
    before = (tmp_path / "whole.safetensors").stat().st_mtime_ns
    collect(CollectConfig(**kw, out=str(tmp_path / "whole.safetensors")))
    assert (tmp_path / "whole.safetensors").stat().st_mtime_ns == before


def test_stats_files_carry_their_provenance(data, tmp_path):
    model_dir = save_model(tmp_path / "model", "llama")
    kw = {"model": str(model_dir), "data": str(data), "device": "cpu"}
    train = tmp_path / "train.safetensors"
    collect(CollectConfig(**kw, shard="1/2", dtype="bf16", out=str(train)))
    meta = load_stats(train).metadata
    loaded = load_model(str(model_dir), dtype="bfloat16")
    assert meta["weights_sha256"] == tensors_sha256(loaded.model.state_dict())
    assert meta["data_meta_sha256"] == file_sha256(data / "meta.json")
    assert meta["split_sha256"] == file_sha256(data / "train.npy")  # meta.json records none
    expected = {"model": str(model_dir), "revision": "", "split": "train", "shard": "1/2"}
    expected |= {"dtype": "bfloat16", "layer": "last", "covariance": "false"}
    assert {k: meta[k] for k in expected} == expected
    assert set(provenance_keys("train")) <= set(meta)
    val = tmp_path / "val.safetensors"
    collect(
        CollectConfig(
            **kw,
            split="validation",
            train_stats=str(train),
            min_count=2,
            out=str(val),
            dtype="bf16",
        )
    )
    vmeta = load_stats(val).metadata
    assert set(provenance_keys("validation")) <= set(vmeta)
    assert vmeta["min_count"] == "2" and vmeta["split"] == "validation"
    assert vmeta["split_sha256"] == file_sha256(data / "validation.npy")
    assert vmeta["train_means_sha256"] == means_sha256(load_stats(train))


def test_merge_refuses_files_of_another_pass(data, tmp_path, capsys):
    """Real files of another model (same shapes), layer, dtype, data or setting: each one
    error line naming the check; the output is never written."""
    model_dir = save_model(tmp_path / "model", "gpt2", layers=2)
    other_model = save_model(tmp_path / "other", "gpt2", layers=2, seed=1)
    other_data = data_dir(tmp_path / "other-data", seed=1)
    kw = {"model": str(model_dir), "data": str(data), "device": "cpu"}

    def run(name, **changes):
        out = tmp_path / f"{name}.safetensors"
        collect(CollectConfig(**{**kw, "shard": "1/2", "out": str(out), **changes}))
        return out

    base = run("base", shard="0/2")
    train_stats = {"train_stats": str(base), "split": "validation"}
    val = run("val", **train_stats, shard="0/2")
    cases = {
        "different model": [base, run("model", model=str(other_model))],
        "different layer": [base, run("layer", layers="0").with_name("layer.layer00.safetensors")],
        "different dtype": [base, run("dtype", dtype="bf16")],
        "different data": [base, run("data", data=str(other_data))],
        "different covariance setting": [base, run("cov", covariance=True)],
        "the same shard twice": [base, run("twice", shard="0/2", batch_size=3)],
        "overlapping shards": [base, run("whole", shard="0/1")],
        "different min-count": [val, run("min", **train_stats, min_count=2)],
        "different train means": [
            val,
            run("means", split="validation", train_stats=str(run("s1"))),
        ],
    }
    out = tmp_path / "merged.safetensors"
    capsys.readouterr()
    for check, inputs in cases.items():
        assert main(["stats", "merge", *map(str, inputs), "--out", str(out)]) == 2, check
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and check in err[0], (check, err)
    assert not out.exists()
    # the same pass with another batch size is no other pass: it merges
    assert (
        main(["stats", "merge", str(base), str(run("s1b", batch_size=3)), "--out", str(out)]) == 0
    )


def test_a_model_whose_body_changed_does_not_resume_its_checkpoint(
    data, tmp_path, monkeypatch, caplog
):
    """The fingerprint covers every weight: a checkpoint of model A is refused once A's
    dir holds a model whose body (not its head or embeddings) changed, and resumed when
    A is back."""
    from transformers import AutoModelForCausalLM

    from lingcollapse import faults
    from lingcollapse.errors import UserError

    model_dir = save_model(tmp_path / "model", "gpt2")
    original = {p.name: p.read_bytes() for p in model_dir.iterdir()}
    out = tmp_path / "train.safetensors"
    cfg = CollectConfig(
        str(model_dir), str(data), out=str(out), device="cpu", batch_size=4, checkpoint_every=8
    )
    reached = []

    def die_at_the_third_batch(name):
        reached.append(name)
        if reached.count("collect.batch") == 3:  # after the checkpoint at sequence 8
            raise KeyboardInterrupt

    monkeypatch.setattr(faults, "point", die_at_the_third_batch)
    with pytest.raises(KeyboardInterrupt):
        collect(cfg)
    monkeypatch.undo()
    partial = out.with_name(out.name + ".partial")
    saved = partial.read_bytes()
    changed = AutoModelForCausalLM.from_pretrained(model_dir)
    with torch.no_grad():
        changed.transformer.h[0].mlp.c_fc.weight[0, 0] += 1.0  # the body, one weight
    changed.save_pretrained(model_dir)
    with pytest.raises(UserError, match="another model"):
        collect(cfg)
    assert partial.read_bytes() == saved and not out.exists()
    for name, content in original.items():  # model A again: its checkpoint resumes
        (model_dir / name).write_bytes(content)
    caplog.set_level(logging.INFO)
    collect(cfg)
    assert f"resuming from {partial} at sequence 8" in caplog.messages
    reference = tmp_path / "ref.safetensors"
    collect(CollectConfig(**{**cfg.__dict__, "out": str(reference)}))
    assert out.read_bytes() == reference.read_bytes()


def _cli(*args):
    return [str(BIN / "lingcollapse"), *args]


@pytest.mark.parametrize("split", ["train", "validation"])
def test_kill_9_then_resume_gives_the_same_bytes(split, tmp_path):
    data = data_dir(tmp_path / "data", sequences=(800, 800), seq_len=32)
    model_dir = save_model(tmp_path / "model", "gpt-neox")
    common = [
        "--data",
        str(data),
        "--batch-size",
        "2",
        "--checkpoint-every",
        "10",
        "--device",
        "cpu",
    ]
    if split == "validation":
        train = tmp_path / "train.safetensors"
        assert main(["collect", str(model_dir), *common, "--out", str(train)]) == 0
        common += ["--split", "validation", "--train-stats", str(train)]
    ref = tmp_path / "ref.safetensors"
    assert main(["collect", str(model_dir), *common, "--out", str(ref)]) == 0
    out = tmp_path / "out.safetensors"
    argv = _cli("collect", str(model_dir), *common, "--out", str(out))
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = out.with_name(out.name + ".partial")
    deadline = time.time() + 120
    while not partial.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and partial.exists() and not out.exists()
    resumed = subprocess.run(argv, capture_output=True, text=True)
    assert resumed.returncode == 0 and "resuming from" in resumed.stderr
    assert out.read_bytes() == ref.read_bytes()
    assert not partial.exists()


def test_two_gloo_ranks_equal_one_process(data, tmp_path):
    model_dir = save_model(tmp_path / "model", "llama")
    one = tmp_path / "one.safetensors"
    collect(CollectConfig(str(model_dir), str(data), out=str(one), device="cpu", batch_size=3))
    two = tmp_path / "two.safetensors"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "2",
            "--master-port",
            "29517",
            "--no-python",
            str(BIN / "lingcollapse"),
            "collect",
            str(model_dir),
            "--data",
            str(data),
            "--out",
            str(two),
            "--device",
            "cpu",
            "--batch-size",
            "3",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    a, b = load_stats(one), load_stats(two)
    assert torch.equal(a.counts, b.counts)
    torch.testing.assert_close(a.means, b.means, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(a.m2, b.m2, rtol=1e-4, atol=1e-6)


def test_bad_inputs(data, tmp_path, capsys):
    model_dir = save_model(tmp_path / "model", "gpt2")
    other_dir = save_model(tmp_path / "other", "gpt2", seed=1)
    big = data_dir(tmp_path / "big", vocab=VOCAB + 50)
    floats = tmp_path / "floats"
    floats.mkdir()
    np.save(floats / "train.npy", np.zeros((3, 5), np.float32))
    flat = tmp_path / "flat"
    flat.mkdir()
    np.save(flat / "train.npy", np.zeros(15, np.int32))
    only_train = tmp_path / "only-train"
    only_train.mkdir()
    np.save(only_train / "train.npy", np.load(data / "train.npy"))
    out = tmp_path / "s.safetensors"
    assert (
        main(["collect", str(model_dir), "--data", str(data), "--out", str(out), "--device", "cpu"])
        == 0
    )
    before = out.read_bytes()
    cases = {
        "model not found": ["collect", str(tmp_path / "nope"), "--data", str(data)],
        "offline hub id": ["collect", "org/not-a-cached-model", "--data", str(data)],
        "ids outside vocab": ["collect", str(model_dir), "--data", str(big)],
        "missing split": [
            "collect",
            str(model_dir),
            "--data",
            str(only_train),
            "--split",
            "validation",
            "--train-stats",
            str(out),
        ],
        "float tokens": ["collect", str(model_dir), "--data", str(floats)],
        "not [S, T]": ["collect", str(model_dir), "--data", str(flat)],
        "shard out of range": ["collect", str(model_dir), "--data", str(data), "--shard", "3/3"],
        "shard garbled": ["collect", str(model_dir), "--data", str(data), "--shard", "a/b"],
        "another model": ["collect", str(other_dir), "--data", str(data)],
        "validation without train stats": [
            "collect",
            str(model_dir),
            "--data",
            str(data),
            "--split",
            "validation",
        ],
        "bad layer": ["collect", str(model_dir), "--data", str(data), "--layers", "7"],
    }
    (tmp_path / "d2").mkdir()
    capsys.readouterr()
    for name, argv in cases.items():
        target = out if name == "another model" else tmp_path / "d2" / "x.safetensors"
        assert main([*argv, "--out", str(target), "--device", "cpu"]) == 2, name
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), (name, err)
    assert out.read_bytes() == before
    assert not list((tmp_path / "d2").iterdir())


def test_bf16_model_keeps_float64_statistics(data, tmp_path):
    model_dir = save_model(tmp_path / "model", "gpt-neo")
    kw = {"model": str(model_dir), "data": str(data), "device": "cpu"}
    collect(CollectConfig(**kw, out=str(tmp_path / "f32.safetensors")))
    collect(CollectConfig(**kw, dtype="bf16", out=str(tmp_path / "bf16.safetensors")))
    a, b = load_stats(tmp_path / "f32.safetensors"), load_stats(tmp_path / "bf16.safetensors")
    assert b.means.dtype == torch.float64 and torch.equal(a.counts, b.counts)
    assert not torch.equal(a.means, b.means)
    torch.testing.assert_close(b.means, a.means, rtol=0.1, atol=0.05)


def test_a_second_writer_is_refused(data, tmp_path, capsys):
    from lingcollapse.io import exclusive

    model_dir = save_model(tmp_path / "model", "gpt2")
    out = tmp_path / "s.safetensors"
    with exclusive(out.with_name(out.name + ".partial")):  # another process's lock
        code = main(
            ["collect", str(model_dir), "--data", str(data), "--out", str(out), "--device", "cpu"]
        )
    assert code == 2 and "another process is writing" in capsys.readouterr().err
    assert not out.exists()
    assert (
        main(["collect", str(model_dir), "--data", str(data), "--out", str(out), "--device", "cpu"])
        == 0
    )
