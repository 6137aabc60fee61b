"""Training: the paper's architecture, the recipe, evaluation, resume after kill -9."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from lingcollapse.cli import main
from lingcollapse.data.prepare import prepare_embedded
from lingcollapse.models.gpt_neo import build_model, gpt_neo_config
from lingcollapse.train.loop import TrainConfig, train

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return prepare_embedded(
        tmp_path_factory.mktemp("d") / "data", tokens=30_000, seq_len=32, vocab_size=300, seed=0
    )


def test_table2_architecture_and_paper_size():
    config = gpt_neo_config(1024, 12, 50257)
    assert config.attention_layers == ["global", "local"] * 6
    assert (config.window_size, config.num_heads, config.activation_function) == (
        256,
        16,
        "gelu_new",
    )
    assert config.embed_dropout == config.attention_dropout == config.resid_dropout == 0
    # the authors' table lists 01x0064 with 3,397,440 parameters (tied embeddings)
    assert build_model(64, 1, 50257, seed=0).num_parameters() == 3_397_440


def test_unknown_sizes_are_refused_unless_allowed(data, capsys):
    code = main(["train", "--data", str(data), "--out", "/tmp/x", "--width", "65"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "unknown width 65" in err[0]


def test_training_lowers_the_loss_with_a_linear_schedule(data, tmp_path):
    cfg = TrainConfig(
        str(data),
        str(tmp_path / "run"),
        width=32,
        depth=1,
        epochs=2,
        lr=3e-3,
        batch_size=16,
        allow_any_size=True,
    )
    result = train(cfg)
    lines = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    evals = [x["val_loss"] for x in lines if "val_loss" in x and not x.get("final")]
    assert len(evals) == 2 and evals[1] < evals[0] < np.log(300)
    lrs = [x["lr"] for x in lines if "lr" in x]
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] == 0.0  # linear to 0, no warm-up
    assert result["val_loss"] == pytest.approx(evals[-1])
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["model"] == "TinyStories-01x0032_02d" and config["n_params"] > 0
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
    assert (tmp_path / "run" / "model" / "tokenizer.json").is_file()


def test_kill_9_then_resume_ends_with_the_same_weights(data, tmp_path):
    argv = [
        "train",
        "--data",
        str(data),
        "--width",
        "32",
        "--depth",
        "2",
        "--epochs",
        "2",
        "--lr",
        "1e-3",
        "--batch-size",
        "16",
        "--checkpoint-every",
        "5",
        "--allow-any-size",
    ]
    assert main([*argv, "--out", str(tmp_path / "ref")]) == 0
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [str(BIN / "lingcollapse"), *argv, "--out", str(run)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    state = run / "checkpoint" / "state.json"
    deadline = time.time() + 120
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and not (run / "eval.json").exists()
    resumed = subprocess.run(
        [str(BIN / "lingcollapse"), *argv, "--out", str(run)], capture_output=True, text=True
    )
    assert resumed.returncode == 0 and "resuming" in resumed.stderr
    a = load_file(str(tmp_path / "ref" / "model" / "model.safetensors"))
    b = load_file(str(run / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_changed_config_is_refused_naming_the_fields(data, tmp_path, capsys):
    base = [
        "train",
        "--data",
        str(data),
        "--out",
        str(tmp_path / "r"),
        "--width",
        "16",
        "--depth",
        "1",
        "--batch-size",
        "64",
        "--allow-any-size",
        "--lr",
        "1e-3",
    ]
    assert main(base) == 0
    capsys.readouterr()
    assert main([*base[:-2], "--lr", "2e-3", "--seed", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lr" in err[0] and "seed" in err[0]


def test_bad_data_is_refused(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["train", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "r")]) == 2
    assert "meta.json" in capsys.readouterr().err
