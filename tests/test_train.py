"""Training: the paper's architecture, the recipe, evaluation, resume after kill -9,
fused attention and data-parallel training."""

import copy
import json
import os
import shutil
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
from lingcollapse.models import registry
from lingcollapse.models.attention import use_sdpa
from lingcollapse.models.gpt_neo import gpt_neo_config
from lingcollapse.models.registry import build
from lingcollapse.train.loop import TrainConfig, train
from tiny import data_dir

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
    assert build("gpt-neo", 64, 1, 50257, seed=0).num_parameters() == 3_397_440


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
        device="cpu",
    )
    result = train(cfg)
    lines = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    evals = [x["val_loss"] for x in lines if "val_loss" in x and not x.get("final")]
    assert len(evals) == 2 and evals[1] < evals[0] < np.log(300)
    lrs = [x["lr"] for x in lines if "lr" in x]
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] == 0.0  # linear to 0, no warm-up
    assert result["val_loss"] == pytest.approx(evals[-1])
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["run"] == "Stories-01x0032_02d" and config["model"] == "01x0032_02d@1"
    assert config["n_params"] > 0 and config["recipe"] == "hf-trainer"
    assert config["max_grad_norm"] == 1.0 and config["seed"] == 42  # the Trainer's defaults
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
    assert (tmp_path / "run" / "model" / "tokenizer.json").is_file()


KILL_ARGV = [
    "train",
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
    "3",
    "--allow-any-size",
    "--device",
    "cpu",  # bit-exact resume is a CPU guarantee (CUDA kernels may reorder sums)
]


def _checkpoints(run: Path) -> list[Path]:
    return sorted((run / "checkpoint").glob("step-*"))


def _kill_after(run: Path, argv: list[str], checkpoints: int) -> None:
    """Start training, SIGKILL it once ``checkpoints`` checkpoints exist, or earlier."""
    proc = subprocess.Popen(
        [str(BIN / "lingcollapse"), *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    seen = {p.name for p in _checkpoints(run)}
    while proc.poll() is None and time.time() < deadline:
        if len({p.name for p in _checkpoints(run)} - seen) >= checkpoints:
            break
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and not (run / "eval.json").exists()


def _log_records(run: Path) -> list[dict]:
    records = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    clock = ("time", "tokens_per_s")  # wall-clock readings: every other value is replayed
    return [{k: v for k, v in r.items() if k not in clock} for r in records]


def test_kill_9_at_several_points_then_resume_ends_with_the_same_weights(data, tmp_path):
    assert main([*KILL_ARGV, "--data", str(data), "--out", str(tmp_path / "ref")]) == 0
    run = tmp_path / "run"
    argv = [*KILL_ARGV, "--data", str(data), "--out", str(run)]
    for checkpoints in (1, 2, 3):  # killed mid-epoch, then again after resuming, …
        _kill_after(run, argv, checkpoints)
        assert all((p / "state.json").is_file() for p in _checkpoints(run))
    resumed = subprocess.run([str(BIN / "lingcollapse"), *argv], capture_output=True, text=True)
    assert resumed.returncode == 0 and "resuming" in resumed.stderr
    a = load_file(str(tmp_path / "ref" / "model" / "model.safetensors"))
    b = load_file(str(run / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # the log reads as one uninterrupted run: same records, same values
    assert _log_records(run) == _log_records(tmp_path / "ref")
    ref_eval = json.loads((tmp_path / "ref" / "eval.json").read_text())
    assert json.loads((run / "eval.json").read_text()) == ref_eval
    assert not (run / "checkpoint").exists()


def test_a_corrupt_checkpoint_is_named_and_never_used(data, tmp_path, capsys):
    run = tmp_path / "run"
    argv = [*KILL_ARGV, "--data", str(data), "--out", str(run)]
    _kill_after(run, argv, 2)
    steps = _checkpoints(run)
    assert len(steps) == 2  # the newest two are kept
    weights = steps[-1] / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-5] ^= 0x10  # one bit of one weight
    weights.write_bytes(bytes(raw))
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "corrupt" in err[0] and str(weights) in err[0]
    assert f"delete {steps[-1]} to resume from the checkpoint before it" in err[0]
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    shutil.rmtree(steps[-1])  # the fix the message gives: resume from the one before
    assert main(argv) == 0


def test_a_checkpoint_cut_off_before_its_rename_is_ignored(data, tmp_path):
    run = tmp_path / "run"
    argv = [*KILL_ARGV, "--data", str(data), "--out", str(run), "--epochs", "1"]
    _kill_after(run, argv, 1)
    partial = run / "checkpoint" / ".step-99999999.tmp"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"\0" * 10)
    assert main(argv) == 0 and (run / "eval.json").is_file()


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


def test_a_run_from_before_the_family_field_is_gpt_neo(data, tmp_path, capsys):
    """config.json of a run made before ``family`` existed: the field's default, so the
    finished run is accepted as gpt-neo and refused as anything else."""
    base = ["train", "--data", str(data), "--out", str(tmp_path / "r"), "--width", "16",
            "--batch-size", "64", "--allow-any-size", "--device", "cpu"]  # fmt: skip
    assert main(base) == 0
    path = tmp_path / "r" / "config.json"
    config = json.loads(path.read_text())
    del config["family"]
    path.write_text(json.dumps(config))
    assert main(base) == 0
    capsys.readouterr()
    assert main([*base, "--family", "llama"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "family: 'gpt-neo' → 'llama'" in err[0]


def test_bad_data_is_refused(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["train", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "r")]) == 2
    assert "meta.json" in capsys.readouterr().err


def test_sdpa_attention_is_gpt_neos_own(tmp_path):
    """Global and sliding-window layers (T > window), with and without a padding mask."""
    eager = build("gpt-neo", 32, 2, 300, 0, max_positions=320, allow_any_size=True).eval()
    fused = copy.deepcopy(eager)
    use_sdpa(fused)
    ids = torch.randint(0, 300, (2, 300), generator=torch.Generator().manual_seed(0))
    pad = torch.ones_like(ids)
    pad[0, :7] = 0
    with torch.no_grad():
        for mask in (None, pad):
            a = eager(input_ids=ids, attention_mask=mask, output_hidden_states=True)
            b = fused(input_ids=ids, attention_mask=mask, output_hidden_states=True)
            rows = slice(7, None)  # padded queries attend to nothing: undefined either way
            torch.testing.assert_close(
                b.hidden_states[-1][:, rows], a.hidden_states[-1][:, rows], rtol=1e-5, atol=1e-5
            )
    assert eager.config.attention_layers == ["global", "local"] and 300 > eager.config.window_size
    fused.save_pretrained(tmp_path / "m")  # a stock GPT-Neo checkpoint: eager loads it
    assert "_attn_implementation" not in json.loads((tmp_path / "m" / "config.json").read_text())


def test_sdpa_and_eager_training_agree(data, tmp_path):
    runs = {}
    for attention in ("sdpa", "eager"):
        cfg = TrainConfig(
            str(data), str(tmp_path / attention), width=32, depth=2, lr=1e-3,
            batch_size=16, allow_any_size=True, attention=attention, device="cpu",
        )  # fmt: skip
        runs[attention] = train(cfg)
    assert runs["sdpa"]["val_loss"] == pytest.approx(runs["eager"]["val_loss"], rel=1e-4)


def test_two_gloo_ranks_train_the_single_process_model(tmp_path):
    """DDP over 2 CPU processes: each rank half of every batch, a last batch of one row
    (so rank 1 runs with weight 0), and the single-process weights at the end."""
    data = data_dir(tmp_path / "data", sequences=(21, 8))
    argv = [
        "train", "--data", str(data), "--width", "16", "--depth", "2", "--lr", "1e-3",
        "--batch-size", "5", "--epochs", "2", "--checkpoint-every", "2", "--allow-any-size",
        "--device", "cpu",
    ]  # fmt: skip
    assert main([*argv, "--out", str(tmp_path / "one")]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [
            sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
            "--master-port", "29519", "--no-python", str(BIN / "lingcollapse"),
            *argv, "--out", str(tmp_path / "two"),
        ],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    a = load_file(str(tmp_path / "one" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "two" / "model" / "model.safetensors"))
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-6)
    one, two = (json.loads((tmp_path / r / "eval.json").read_text()) for r in ("one", "two"))
    assert two["val_tokens"] == one["val_tokens"] == 8 * 19
    assert two["val_loss"] == pytest.approx(one["val_loss"], rel=1e-5)
    assert json.loads((tmp_path / "two" / "config.json").read_text())["world_size"] == 2


@pytest.mark.gpu
def test_cuda_training_compiled_in_bf16_matches_cpu(data, tmp_path):
    """The CUDA path (SDPA, torch.compile, bf16 autocast, fused AdamW) trains the same
    model as the float32 CPU path, to bf16 rounding."""
    results = {}
    for device in ("cpu", "cuda"):
        cfg = TrainConfig(
            str(data), str(tmp_path / device), width=32, depth=2, lr=1e-3, batch_size=16,
            allow_any_size=True, device=device,
        )  # fmt: skip
        results[device] = train(cfg)
    assert results["cuda"]["val_loss"] == pytest.approx(results["cpu"]["val_loss"], rel=2e-2)
    assert results["cuda"]["val_tokens"] == results["cpu"]["val_tokens"]


@pytest.mark.parametrize("family", ["gpt2", "pythia", "llama"])
def test_other_families_train_at_the_same_width_and_depth(data, tmp_path, family):
    from transformers import AutoModelForCausalLM

    cfg = TrainConfig(
        str(data), str(tmp_path / "run"), family=family, width=32, depth=2, lr=3e-3,
        batch_size=32, allow_any_size=True, device="cpu",
    )  # fmt: skip
    result = train(cfg)
    assert result["val_loss"] < np.log(300)  # it learned something in one epoch
    name = registry.family(family).name  # the alias resolves: pythia → gpt-neox
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["family"] == name and config["run"] == f"Stories-02x0032_01d-{name}"
    assert config["model"] == f"02x0032_01d-{name}@0"  # the authors' id, family appended
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "model")
    assert type(model).__name__ == registry.FAMILIES[name].model_class
    assert model.config.hidden_size == 32 and model.config.num_hidden_layers == 2


def test_an_unknown_family_gets_a_did_you_mean(data, tmp_path, capsys):
    argv = ["train", "--data", str(data), "--out", str(tmp_path / "r"), "--family", "lama"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1 and "unknown model family 'lama'" in err[0] and "did you mean llama" in err[0]
    )
    assert not (tmp_path / "r").exists()
