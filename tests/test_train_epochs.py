"""Epoch checkpoints are models (``--save-epochs``), runs start from a model (``--init``),
and the names and identity of what is measured follow the authors' ids."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lingcollapse.cli import main
from lingcollapse.data.prepare import prepare_embedded
from tiny import save_model

BIN = Path(sys.executable).parent
ARGV = [
    "train", "--width", "16", "--depth", "1", "--epochs", "3", "--lr", "3e-3",
    "--batch-size", "16", "--allow-any-size", "--device", "cpu", "--save-epochs", "1,3",
]  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return prepare_embedded(
        tmp_path_factory.mktemp("d") / "data", tokens=12_000, seq_len=32, vocab_size=300, seed=0
    )


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("r") / "run"
    assert main([*ARGV, "--data", str(data), "--out", str(out)]) == 0
    return out


def _files(path: Path) -> dict[str, bytes]:
    """What ``train`` writes into a model dir (not what measuring it adds)."""
    later = ("metrics.json", "classes.parquet")
    return {p.name: p.read_bytes() for p in path.iterdir() if p.is_file() and p.name not in later}


def test_the_models_after_the_asked_epochs_are_kept(run):
    from transformers import AutoModelForCausalLM

    assert sorted(p.name for p in run.glob("epoch-*")) == ["epoch-1", "epoch-3"]
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    evals = {r["epoch"]: r for r in log if "val_loss" in r and not r.get("final")}
    for epoch in (1, 3):
        saved = json.loads((run / f"epoch-{epoch}" / "eval.json").read_text())
        assert saved["val_loss"] == evals[epoch]["val_loss"]  # that epoch's evaluation
        model = AutoModelForCausalLM.from_pretrained(run / f"epoch-{epoch}")  # a stock HF dir
        assert model.config.hidden_size == 16
        ident = json.loads((run / f"epoch-{epoch}" / "lingcollapse.json").read_text())
        assert (
            ident["model"] == f"01x0016_03d@{epoch - 1}" and ident["run"] == "Stories-01x0016_03d"
        )
        assert (ident["epochs"], ident["schedule_epochs"], ident["checkpoint"]) == (
            epoch,
            3,
            epoch - 1,
        )
    last, final = (load_file(str(run / d / "model.safetensors")) for d in ("epoch-3", "model"))
    first = load_file(str(run / "epoch-1" / "model.safetensors"))
    assert all(torch.equal(last[k], final[k]) for k in final)  # epoch 3 is the trained model
    assert not all(torch.equal(first[k], final[k]) for k in final)
    assert json.loads((run / "eval.json").read_text())["val_loss"] == evals[3]["val_loss"]


def test_an_epoch_model_is_collected_and_measured_like_any_model(run, data, capsys):
    model = run / "epoch-1"
    stats = model / "stats"
    base = ["collect", str(model), "--data", str(data), "--device", "cpu"]
    assert main([*base, "--out", str(stats / "train.safetensors")]) == 0
    assert main([*base, "--split", "validation", "--train-stats", str(stats / "train.safetensors"),
                 "--out", str(stats / "validation.safetensors")]) == 0  # fmt: skip
    assert main(["measure", str(stats / "train.safetensors"), "--device", "cpu"]) == 0
    metrics = json.loads((model / "metrics.json").read_text())
    assert metrics["model"] == "01x0016_03d@0" and metrics["run"] == "Stories-01x0016_03d"
    assert (metrics["epochs"], metrics["schedule_epochs"]) == (1, 3)
    assert "nc3_duality_mean" in metrics  # the epoch dir's own classifier was found
    # the validation loss collect measures is the one training recorded for that epoch
    saved = json.loads((model / "eval.json").read_text())
    assert metrics["val_loss"] == pytest.approx(saved["val_loss"], rel=1e-5)
    assert metrics["val_acc"] == pytest.approx(saved["val_acc"], abs=1e-9)
    capsys.readouterr()
    assert main(["inspect", str(model), "--top", "3"]) == 0  # Tables 4–5 read it too
    assert f"top 3 by count in {model}" in capsys.readouterr().out


def test_a_damaged_epoch_model_is_named_and_never_loaded(run, data, tmp_path, capsys):
    import shutil

    copy = tmp_path / "epoch-1"
    shutil.copytree(run / "epoch-1", copy, ignore=shutil.ignore_patterns("stats", "*.json*"))
    for name in ("config.json", "eval.json", "lingcollapse.json", "generation_config.json"):
        if (run / "epoch-1" / name).is_file():
            shutil.copy(run / "epoch-1" / name, copy / name)
    weights = copy / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-3] ^= 0x04
    weights.write_bytes(bytes(raw))
    out = tmp_path / "train.safetensors"
    assert main(["collect", str(copy), "--data", str(data), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(weights) in err[0] and "corrupt" in err[0]
    assert not out.exists()


@pytest.mark.parametrize("point", ["write:*epoch-3", "wrote:*epoch-3", "write:*/model"])
def test_a_kill_around_an_epoch_save_then_the_same_command_gives_the_same_files(
    run, data, tmp_path, point
):
    out = tmp_path / "run"
    argv = [str(BIN / "lingcollapse"), *ARGV, "--data", str(data), "--out", str(out)]
    env = {**os.environ, "LINGCOLLAPSE_FAULT": point}
    killed = subprocess.run(argv, env=env, capture_output=True, text=True)
    assert killed.returncode == -9 and not (out / "eval.json").exists()
    resumed = subprocess.run(argv, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    for name in ("epoch-1", "epoch-3", "model"):
        assert _files(out / name) == _files(run / name), name
    assert not list(out.glob(".*.tmp"))


def test_a_finished_run_with_other_save_epochs_is_refused(run, data, capsys):
    argv = [*ARGV[:-1], "1,2", "--data", str(data), "--out", str(run)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "save_epochs: [1, 3] → [1, 2]" in err


def test_a_run_of_the_old_recipe_is_not_resumed_under_the_new_one(data, tmp_path, capsys):
    """Runs made before the Trainer's recipe decayed every parameter and never clipped."""
    argv = [*ARGV[:-2], "--epochs", "1", "--data", str(data), "--out", str(tmp_path / "r")]
    assert main(argv) == 0
    path = tmp_path / "r" / "config.json"
    config = json.loads(path.read_text())
    for key in ("recipe", "max_grad_norm", "warmup_steps", "save_epochs"):
        del config[key]
    path.write_text(json.dumps(config))
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "recipe: 'decay-all-no-clip' → 'hf-trainer'" in err and "max_grad_norm" in err


def test_init_takes_the_models_architecture_and_weights(data, tmp_path, capsys):
    init = save_model(tmp_path / "init", "llama", vocab=300, width=16, layers=2)
    out = tmp_path / "run"
    argv = ["train", "--data", str(data), "--out", str(out), "--init", str(init),
            "--epochs", "1", "--lr", "1e-3", "--batch-size", "16", "--device", "cpu",
            "--attention", "eager"]  # fmt: skip
    assert main(argv) == 0
    config = json.loads((out / "config.json").read_text())
    assert (config["family"], config["width"], config["depth"]) == ("llama", 16, 2)
    assert config["model"] == "02x0016_01d-llama@0" and len(config["init_sha256"]) == 64
    ident = json.loads((out / "model" / "lingcollapse.json").read_text())
    assert ident["init_sha256"] == config["init_sha256"]
    start = load_file(str(init / "model.safetensors"))
    end = load_file(str(out / "model" / "model.safetensors"))
    moved = [k for k in start if not torch.equal(start[k], end[k])]
    assert moved and start.keys() == end.keys()  # the same architecture, trained on
    capsys.readouterr()
    assert main([*argv, "--depth", "3"]) == 2  # a flag that disagrees with the model
    err = capsys.readouterr().err
    assert "--depth 3 but the model's is 2" in err
