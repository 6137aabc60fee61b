"""Watching training: log.jsonl's rows (loss window, lr, gradient norm, tokens/s,
fractional epochs, evaluation every --eval-steps), the --report-to backends read back
(TensorBoard's event files, W&B's offline run file, MLflow's store), a resume that
continues the same curves, a sweep's NC metrics on them, and progress lines off a
terminal."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lingcollapse import progress as progress_module
from lingcollapse.cli import main
from lingcollapse.models import registry
from lingcollapse.train.loop import epoch_order
from lingcollapse.train.tracking import SETTINGS
from tiny import data_dir

BIN = Path(sys.executable).parent
# 24 sequences of 20 tokens, 4 per batch: 6 steps an epoch, 12 in all
BATCH, STEPS_PER_EPOCH, TOTAL = 4, 6, 12
ARGV = ["train", "--width", "16", "--depth", "1", "--epochs", "2", "--lr", "1e-3",
        "--batch-size", str(BATCH), "--allow-any-size", "--device", "cpu",
        "--attention", "eager"]  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return data_dir(tmp_path_factory.mktemp("d") / "data")


def _rows(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]


def _training(run: Path) -> dict[int, dict]:
    return {r["step"]: r for r in _rows(run) if "loss" in r}


def _evaluations(run: Path) -> dict[int, dict]:
    return {r["step"]: r for r in _rows(run) if "val_loss" in r and not r.get("final")}


def _scalars(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar TensorBoard shows from ``logdir``: tag → [(step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.fixture(scope="module")
def watched(data, tmp_path_factory):
    """One run reported to TensorBoard, logged every 2 steps, evaluated every 3, with
    progress lines every millisecond; and the same run logged at every step."""
    tmp = tmp_path_factory.mktemp("watched")
    run, every_step = tmp / "run", tmp / "every-step"
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("lingcollapse.progress")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)  # as the CLI's logging.basicConfig, which pytest's own
    before = os.environ.get(progress_module.LOG_EVERY_ENV)  # handlers make a no-op
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(progress_module, "_on_terminal", lambda: False)
            argv = [*ARGV, "--data", str(data), "--out", str(run), "--report-to",
                    "tensorboard", "--logging-steps", "2", "--eval-steps", "3",
                    "--log-every", "0.001"]  # fmt: skip
            assert main(argv) == 0
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
    after = os.environ.get(progress_module.LOG_EVERY_ENV)
    argv = [*ARGV, "--data", str(data), "--out", str(every_step), "--logging-steps", "1"]
    assert main(argv) == 0
    return run, every_step, [r.getMessage() for r in records], (before, after)


def test_log_rows_every_logging_step_with_fractional_epochs(watched):
    run, every_step, _, _ = watched
    rows = _rows(run)
    train = _training(run)
    assert sorted(train) == [2, 4, 6, 8, 10, 12]
    assert sorted(_evaluations(run)) == [3, 6, 9, 12]  # --eval-steps and the epoch ends
    for row in rows:
        assert row["epoch"] == pytest.approx(row["step"] / STEPS_PER_EPOCH)
        assert isinstance(row["epoch"], float)
    assert _evaluations(run)[6]["epoch"] == 1.0 and _evaluations(run)[12]["epoch"] == 2.0
    epochs = [r["epoch"] for r in rows]
    assert epochs == sorted(epochs)  # one count of epochs, monotone through the log
    assert rows[-1]["final"] and rows[-1]["step"] == TOTAL and rows[-1]["epoch"] == 2.0
    for step, row in train.items():
        assert set(row) == {"time", "step", "epoch", "loss", "lr", "grad_norm", "tokens_per_s"}
        assert row["lr"] == pytest.approx(1e-3 * (1 - step / TOTAL))  # linear, no warm-up
        assert row["tokens_per_s"] > 0 and row["grad_norm"] > 0
    # the loss is the mean of the steps' losses since the row before
    single = _training(every_step)
    assert sorted(single) == list(range(1, TOTAL + 1))
    for step, row in train.items():
        window = [single[s]["loss"] for s in (step - 1, step)]
        assert row["loss"] == pytest.approx(sum(window) / 2, rel=1e-12)
        assert row["grad_norm"] == pytest.approx(single[step]["grad_norm"], rel=1e-6)
    # evaluating mid-epoch changes no weight: the epoch ends' evaluations are the same
    evals = _evaluations(every_step)
    assert sorted(evals) == [6, 12]
    for step in (6, 12):
        assert _evaluations(run)[step]["val_loss"] == pytest.approx(evals[step]["val_loss"])


def test_tensorboard_shows_the_logged_values(watched):
    run, _, _, _ = watched
    found = _scalars(run / "tb")
    train, evals = _training(run), _evaluations(run)
    names = {"loss": "train/loss", "lr": "train/learning_rate", "grad_norm": "train/grad_norm",
             "tokens_per_s": "train/tokens_per_s"}  # fmt: skip
    for key, tag in names.items():
        assert [s for s, _ in found[tag]] == sorted(train)
        for step, value in found[tag]:
            assert value == pytest.approx(train[step][key], rel=1e-6)  # float32 in the file
    for key in ("loss", "acc", "ppl"):
        assert dict(found[f"eval/{key}"]) == pytest.approx(
            {s: r[f"val_{key}"] for s, r in evals.items()}, rel=1e-6
        )
    epochs = dict(found["train/epoch"])
    assert epochs == pytest.approx({s: s / STEPS_PER_EPOCH for s in sorted({*train, *evals})})
    config = json.loads((run / "config.json").read_text())
    assert config["report_to"] == ["tensorboard"] and config["steps_per_epoch"] == 6


def test_the_gradient_norm_is_the_global_norm_before_clipping(data, tmp_path):
    """Step 1 from the fresh model: the norm of the whole gradient, brute force in
    float64, with clipping (clip_grad_norm_'s return) and without (computed only then)."""
    meta = json.loads((data / "meta.json").read_text())
    tokens = np.load(data / "train.npy")
    model = registry.build("gpt-neo", 16, 1, meta["vocab_size"], 42, max_positions=20,
                           eos_token_id=0, allow_any_size=True)  # fmt: skip
    batch = np.sort(epoch_order(42, 0, len(tokens))[:BATCH])
    ids = torch.from_numpy(tokens[batch].astype(np.int64))
    logits = model(input_ids=ids).logits[:, :-1]
    F.cross_entropy(logits.flatten(0, 1).float(), ids[:, 1:].flatten()).backward()
    brute = math.sqrt(sum(float(p.grad.double().square().sum()) for p in model.parameters()))
    for clip in ("1.0", "0"):
        run = tmp_path / clip
        argv = [*ARGV, "--data", str(data), "--out", str(run), "--logging-steps", "1",
                "--epochs", "1", "--max-grad-norm", clip]  # fmt: skip
        assert main(argv) == 0
        assert _training(run)[1]["grad_norm"] == pytest.approx(brute, rel=1e-5)
    assert brute > 1.0  # so clipping changed the clipped run: the two took both paths
    clipped, free = (json.loads((tmp_path / r / "eval.json").read_text()) for r in ("1.0", "0"))
    assert clipped["val_loss"] != free["val_loss"]


def test_progress_lines_off_a_terminal_while_training(watched):
    _, _, lines, (before, after) = watched
    pattern = (r"train Data-01x0016_02d: [\d.]+k?/[\d.]+k? tok \(\d+\.\d%\) [\d.]+k? tok/s, "
               r"ETA \d+:\d\d:\d\d, loss \d+\.\d{3}  step \d+/12")  # fmt: skip
    assert any(re.fullmatch(pattern, line) for line in lines), lines
    assert re.fullmatch(r"train Data-01x0016_02d: done 960 tok in \d+:\d\d:\d\d \([\d.]+k? "
                        r"tok/s\), loss \d\.\d{3}  step 12/12", lines[-1])  # fmt: skip
    assert before == after  # --log-every holds while its command runs, not after


def test_progress_logs_a_line_every_interval_and_a_last_one(monkeypatch, caplog):
    monkeypatch.setattr(progress_module, "_on_terminal", lambda: False)
    monkeypatch.setenv(progress_module.LOG_EVERY_ENV, "0.05")
    caplog.set_level(logging.INFO, logger="lingcollapse.progress")
    with progress_module.progress(total=8192, desc="collect train", unit="seq") as bar:
        for i in range(8):
            time.sleep(0.03)
            bar.update(1024)
            bar.set_postfix_str(f"{(i + 1) * 1024}/8192 seq")
    lines = [r.getMessage() for r in caplog.records]
    assert 2 <= len(lines) <= 6, lines  # about every 0.05 s of 0.24 s, then the last
    for line in lines[:-1]:
        found = re.fullmatch(
            r"collect train: ([\d,]+)/8,192 seq \((\d+\.\d)%\) [\d,]+ seq/s, ETA 0:00:00, "
            r"(\d+)/8192 seq",
            line,
        )
        assert found, line
        n = int(found[1].replace(",", ""))
        assert n == int(found[3]) and float(found[2]) == pytest.approx(100 * n / 8192, abs=0.05)
    assert re.fullmatch(r"collect train: done 8,192 seq in 0:00:00 \([\d,]+ seq/s\), 8192/8192 "
                        r"seq", lines[-1])  # fmt: skip
    caplog.clear()
    monkeypatch.setenv(progress_module.LOG_EVERY_ENV, "0")  # off
    for _ in progress_module.progress(range(3), desc="x"):
        time.sleep(0.01)
    assert caplog.records == []
    monkeypatch.setenv(progress_module.LOG_EVERY_ENV, "0.001")
    with pytest.raises(KeyError), progress_module.progress(total=2, desc="x") as bar:
        time.sleep(0.01)
        raise KeyError  # the error is what is said, no "done" after it
    assert caplog.records == []


def test_a_resumed_run_continues_the_same_curves(data, tmp_path):
    """Killed right after the step-8 log row, before its checkpoint is in place: the
    resumed run drops step 8 from log.jsonl and TensorBoard and writes it again."""
    report = ["--report-to", "tensorboard", "--logging-steps", "2", "--checkpoint-every", "4"]
    ref = tmp_path / "ref"
    assert main([*ARGV, *report, "--data", str(data), "--out", str(ref)]) == 0
    run = tmp_path / "run"
    argv = [*ARGV, *report, "--data", str(data), "--out", str(run)]
    env = {**os.environ, "LINGCOLLAPSE_FAULT": "write:*step-00000008"}
    killed = subprocess.run([str(BIN / "lingcollapse"), *argv], env=env, capture_output=True)
    assert killed.returncode == -9 and not (run / "eval.json").exists()
    assert max(_training(run)) == 8 and (run / "checkpoint" / "step-00000006").is_dir()
    # TensorBoard reads a dir's event files in name order, the name starting with the
    # second it was made: a resume within the same second would sort by pid instead
    time.sleep(1.1)
    assert main(argv) == 0
    clock = ("time", "tokens_per_s")
    assert [{k: v for k, v in r.items() if k not in clock} for r in _rows(run)] == [
        {k: v for k, v in r.items() if k not in clock} for r in _rows(ref)
    ]
    found, expected = _scalars(run / "tb"), _scalars(ref / "tb")
    assert found.keys() == expected.keys()
    for tag in ("train/loss", "train/grad_norm", "eval/loss"):
        assert found[tag] == expected[tag]  # step 8 once: the interrupted run's purged


def _wandb_history(run: Path) -> list[dict]:
    """The history rows of the W&B offline run in ``run``: the run file is a
    LevelDB-style log (32 KiB blocks of checksummed, possibly split records) of
    ``wandb_internal_pb2.Record`` messages."""
    from wandb.proto import wandb_internal_pb2

    rows = []
    for path in sorted(run.glob("wandb/offline-run-*/run-*.wandb")):
        raw, pos, pending = path.read_bytes(), 7, b""  # after the ":W&B" file header
        assert raw[:4] == b":W&B"
        while pos + 7 <= len(raw):
            if 32768 - pos % 32768 < 7:  # a block's tail too short for a header: padding
                pos += 32768 - pos % 32768
                continue
            _, length, kind = struct.unpack("<IHB", raw[pos : pos + 7])
            chunk, pos = raw[pos + 7 : pos + 7 + length], pos + 7 + length
            pending = chunk if kind in (1, 2) else pending + chunk
            if kind in (1, 4):  # a whole record, or its last piece
                record = wandb_internal_pb2.Record()
                record.ParseFromString(pending)
                if record.WhichOneof("record_type") == "history":
                    items = record.history.item
                    rows.append(
                        {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in items}
                    )
    return rows


def test_wandb_offline_run_holds_the_curves(data, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = tmp_path / "run"
    argv = [*ARGV, "--data", str(data), "--out", str(run), "--report-to", "wandb",
            "--logging-steps", "4", "--epochs", "1"]  # fmt: skip
    assert main(argv) == 0
    history = _wandb_history(run)
    losses = {r["train/global_step"]: r["train/loss"] for r in history if "train/loss" in r}
    assert losses == pytest.approx({s: r["loss"] for s, r in _training(run).items()})
    evals = {r["train/global_step"]: r["eval/loss"] for r in history if "eval/loss" in r}
    assert evals == pytest.approx({6: _evaluations(run)[6]["val_loss"]})
    ids = json.loads((run / "tracking.json").read_text())["wandb"]["id"]
    assert ids.startswith("Data-01x0016_01d-")
    assert [p.name.split("-")[-1] for p in run.glob("wandb/offline-run-*")] == [ids.split("-")[-1]]


def test_mlflow_run_holds_the_curves(data, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run = tmp_path / "run"
    argv = [*ARGV, "--data", str(data), "--out", str(run), "--report-to", "mlflow,tensorboard",
            "--logging-steps", "3", "--epochs", "1"]  # fmt: skip
    assert main(argv) == 0
    saved = json.loads((run / "tracking.json").read_text())["mlflow"]
    assert saved["tracking_uri"] == f"sqlite:///{(run / 'mlflow.db').resolve()}"
    client = MlflowClient(saved["tracking_uri"])
    history = client.get_metric_history(saved["run_id"], "train/loss")
    assert {m.step: m.value for m in history} == pytest.approx(
        {s: r["loss"] for s, r in _training(run).items()}
    )
    found = client.get_run(saved["run_id"])
    assert found.info.status == "FINISHED" and found.info.run_name == "Data-01x0016_01d"
    assert found.data.params["lr"] == "0.001" and found.data.metrics["eval/loss"] == (
        pytest.approx(_evaluations(run)[6]["val_loss"])
    )
    assert dict(_scalars(run / "tb")["train/loss"]) == pytest.approx(
        {m.step: m.value for m in history}  # both backends, the same values
    )


SWEEP = """
name = "tracked"
[data]
corpus = "embedded"
tokens = 8_000
seq_len = 16
vocab_size = 300
[train]
widths = [8]
depths = [1]
epochs = [2]
measure_epochs = [1, 2]
options = { batch_size = 32, lr = 3e-3, allow_any_size = true, report_to = ["tensorboard"] }
[collect]
batch_size = 64
"""


def test_a_sweep_reports_the_nc_metrics_on_the_training_curves(tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text(SWEEP)
    out = tmp_path / "out"
    assert main(["sweep", str(grid), "--out", str(out)]) == 0
    (run,) = (out / "runs").iterdir()
    steps = json.loads((run / "config.json").read_text())["steps_per_epoch"]
    found = _scalars(run / "tb")
    for epoch, where in ((1, run / "epoch-1"), (2, run)):
        metrics = json.loads((where / "metrics.json").read_text())
        numbers = {k for k, v in metrics.items() if type(v) in (int, float)}
        assert {f"nc/{k}" for k in numbers - SETTINGS} <= found.keys()
        for key in ("val_loss", "nc1_cdnv", "nc2_etf_error", "ncc_acc", "n_classes"):
            assert dict(found[f"nc/{key}"])[epoch * steps] == pytest.approx(metrics[key], rel=1e-6)
    assert [s for s, _ in found["nc/epoch"]] == [steps, 2 * steps]
    assert "nc/width" not in found and "nc/seed" not in found  # settings, not measurements
    assert dict(found["train/loss"]).keys() == set(range(50, 2 * steps + 1, 50)) | {2 * steps}
    # reporting is no part of the recipe: the finished sweep continues without it
    grid.write_text(SWEEP.replace(', report_to = ["tensorboard"]', ""))
    assert main(["sweep", str(grid), "--out", str(out)]) == 0


def test_reporting_may_change_when_a_run_resumes(data, tmp_path):
    run = tmp_path / "run"
    base = [*ARGV, "--data", str(data), "--out", str(run), "--epochs", "1"]
    assert main([*base, "--report-to", "tensorboard"]) == 0
    assert main([*base, "--logging-steps", "3", "--eval-steps", "2", "--report-to", "none"]) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--report-to", "tensorbord"],
            "unknown backend 'tensorbord'; did you mean 'tensorboard'?",
        ),
        (["--report-to", "none,wandb"], "--report-to none reports nowhere: give it alone"),
        (["--logging-steps", "0"], "--logging-steps must be a whole number of steps ≥ 1"),
        (["--eval-steps", "2.5"], "--eval-steps must be a whole number of steps ≥ 1"),
        (["--log-every", "-1"], "--log-every must be a number of seconds ≥ 0"),
    ],
)
def test_bad_reporting_options_are_one_line(data, tmp_path, capsys, args, message):
    assert main([*ARGV, "--data", str(data), "--out", str(tmp_path / "r"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("backend", ["tensorboard", "wandb", "mlflow"])
def test_a_missing_backend_names_its_extra(data, tmp_path, capsys, monkeypatch, backend):
    monkeypatch.setitem(sys.modules, backend, None)  # import fails, find_spec finds nothing
    argv = [*ARGV, "--data", str(data), "--out", str(tmp_path / "r"), "--report-to", backend]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: --report-to {backend} needs the {backend} package: "
        f"pip install 'lingcollapse[{backend}]'"
    ]
    assert not (tmp_path / "r").exists()


def test_a_grid_with_a_misspelt_backend_fails_before_any_work(tmp_path, capsys):
    grid = tmp_path / "grid.toml"
    grid.write_text(SWEEP.replace('["tensorboard"]', '["wandbb"]'))
    assert main(["sweep", str(grid), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "did you mean 'wandb'?" in err[0] and "[train] options" in err[0]
    assert not (tmp_path / "out").exists()


def test_logging_steps_below_one_are_a_share_of_the_run(data, tmp_path):
    run = tmp_path / "run"
    argv = [*ARGV, "--data", str(data), "--out", str(run), "--logging-steps", "0.25"]
    assert main(argv) == 0
    assert sorted(_training(run)) == [3, 6, 9, 12]  # ⌈0.25 · 12⌉ = 3, as the Trainer reads it
