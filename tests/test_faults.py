"""Fault injection and corruption (the hardening issue).

Kill -9 at named points (``LINGCOLLAPSE_FAULT``, see :mod:`lingcollapse.faults`) of
``data prepare``, ``collect`` (train and validation) and ``sweep``, each time in the
same output, then run the same command to the end: its artifacts equal those of an
uninterrupted run (collect: the same bytes; elsewhere statistics to 1e-12 relative,
counts exactly), and after every kill each file under a final name is complete and
valid. Then truncated and bit-flipped artifacts: exit 2 and one ``error:`` line that
names the file, never a silent use.

The commands run through the CLI's ``main`` in child processes forked from a
``forkserver`` that has imported torch and transformers once: a real process that a
real SIGKILL ends, without paying five seconds of imports per run.
"""

import json
import math
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from lingcollapse.cli import main
from lingcollapse.collect.data import open_split
from lingcollapse.collect.run import _read_checkpoint
from lingcollapse.faults import VARIABLE
from lingcollapse.io import CHECKSUM, read_json
from lingcollapse.stats.files import load_stats
from tiny import VOCAB, data_dir, save_model

_CTX = multiprocessing.get_context("forkserver")
_CTX.set_forkserver_preload(
    [
        "lingcollapse.cli",
        "lingcollapse.collect.run",
        "lingcollapse.sweep.stages",
        "lingcollapse.train.loop",
        "lingcollapse.data.prepare",
        "transformers.models.gpt2.modeling_gpt2",
        "transformers.models.gpt_neo.modeling_gpt_neo",
        "pyarrow.parquet",
        __name__,  # this module, whose _child each run unpickles, and its imports
    ]
)
KILLED = -signal.SIGKILL


def _child(argv: list[str], fault: str | None, log: str) -> None:
    """The body of ``lingcollapse ARGV`` with ``$LINGCOLLAPSE_FAULT=fault``."""
    torch.set_num_threads(1)  # 2 cores shared by many: spinning threads would crawl
    os.environ.pop(VARIABLE, None)
    if fault:
        os.environ[VARIABLE] = fault
    with open(log, "w") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
    code = main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _start_forkserver() -> None:
    """Start it with this dir importable: Python < 3.13 passes it no sys.path, and a
    preload that fails to import is skipped in silence (then every child imports it)."""
    before = os.environ.get("PYTHONPATH")
    here = str(Path(__file__).parent)
    os.environ["PYTHONPATH"] = os.pathsep.join([here, *([before] if before else [])])
    try:
        multiprocessing.forkserver.ensure_running()
    finally:
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before


def cli(tmp: Path, *argv, fault=None, kill_when=None) -> tuple[int, str]:
    """Run the command in a child; ``kill_when()`` true → SIGKILL from outside."""
    _start_forkserver()
    log = tmp / f"log-{time.monotonic_ns()}.txt"
    proc = _CTX.Process(target=_child, args=([str(a) for a in argv], fault, str(log)))
    proc.start()
    deadline = time.monotonic() + 300
    while kill_when and proc.is_alive() and time.monotonic() < deadline:
        if kill_when():
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.002)
    proc.join(max(1.0, deadline - time.monotonic()))
    return proc.exitcode, log.read_text() if log.exists() else ""


def assert_nothing_partial(root: Path) -> int:
    """Every file under a final name (not hidden, not in a hidden dir) is complete:
    it loads, and checks against its checksum where it has one. Returns files seen."""
    seen = 0
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_dir() or any(part.startswith(".") for part in rel.parts):
            continue
        seen += 1
        suffix = path.suffix
        if path.name.endswith(".partial"):
            _read_checkpoint(path)
        elif suffix == ".safetensors":
            if "stats" in rel.parts:
                load_stats(path)
            else:
                load_file(str(path))
        elif suffix == ".json":
            read_json(path, "")
        elif suffix == ".jsonl":
            for line in path.read_text().splitlines():
                json.loads(line)
        elif suffix == ".parquet":
            pd.read_parquet(path)
        elif suffix == ".npy":
            open_split(path.parent, path.stem, 1 << 30)
    return seen


def assert_same_stats(a: Path, b: Path, rtol: float = 1e-12) -> None:
    """Counts exactly, every float tensor to ``rtol`` relative."""
    x, y = load_file(str(a)), load_file(str(b))
    assert x.keys() == y.keys(), (a, b)
    for key in x:
        if x[key].is_floating_point():
            torch.testing.assert_close(x[key], y[key], rtol=rtol, atol=0, msg=f"{a}: {key}")
        else:
            assert torch.equal(x[key], y[key]), (a, key)


def assert_same_json(a: Path, b: Path, rtol: float = 1e-12, skip=(CHECKSUM,)) -> None:
    x, y = json.loads(a.read_text()), json.loads(b.read_text())
    assert x.keys() == y.keys(), a
    for key in x:
        if key in skip:
            continue
        if isinstance(x[key], float) and not math.isnan(x[key]):
            assert y[key] == pytest.approx(x[key], rel=rtol, abs=0), (a, key)
        else:
            assert x[key] == y[key] or x[key] != x[key], (a, key)


# --------------------------------------------------------------------------- collect


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tiny")
    data = data_dir(tmp / "data", sequences=(48, 24), seq_len=32)
    model = save_model(tmp / "model", "gpt2")
    common = ["--data", data, "--batch-size", "4", "--checkpoint-every", "8", "--device", "cpu"]
    common = [str(a) for a in common]
    train = tmp / "ref" / "train.safetensors"  # in a child too: the same thread count
    assert cli(tmp, "collect", model, *common, "--out", train)[0] == 0
    val = tmp / "ref" / "validation.safetensors"
    val_args = ["--split", "validation", "--train-stats", train]
    assert cli(tmp, "collect", model, *common, *val_args, "--out", val)[0] == 0
    return {"model": model, "common": common, "train": train, "validation": val}


# Each run of one output dir dies at the next point; the last runs to the end. Train:
# 48 sequences in batches of 4, a checkpoint every 8 (after sequences 8, 16, …, 40).
KILLS = {
    "train": [
        "collect.batch:3",  # after checkpoint 8 and one more batch
        "write:*/train.safetensors.partial",  # checkpoint 16 written, not yet renamed
        "wrote:*/train.safetensors.partial:2",  # just after checkpoints 16 and 24
        "write:*/train.safetensors",  # the finished file, not yet renamed
    ],
    "validation": [
        "collect.batch:3",  # after checkpoint 8 and one more batch
        "write:*/validation.safetensors.partial",
        "write:*/validation.safetensors",
    ],
}


@pytest.mark.parametrize("split", ["train", "validation"])
def test_collect_killed_anywhere_ends_with_the_same_bytes(split, tiny, tmp_path):
    out = tmp_path / "stats" / f"{split}.safetensors"
    partial = out.with_name(out.name + ".partial")
    argv = ["collect", tiny["model"], *tiny["common"], "--out", out]
    if split == "validation":
        argv += ["--split", "validation", "--train-stats", tiny["train"]]
    for i, fault in enumerate(KILLS[split]):
        code, log = cli(tmp_path, *argv, fault=fault)
        assert code == KILLED, (fault, log[-2000:])
        assert ("resuming from" in log) == (i > 0), (fault, log[-2000:])
        assert not out.exists() and partial.is_file(), fault
        if fault.startswith("write:"):  # written, not renamed: a temporary file is left
            assert list(out.parent.glob(".*.tmp")), fault
        assert assert_nothing_partial(out.parent) == 1
    code, log = cli(tmp_path, *argv)
    assert code == 0 and "resuming from" in log, log[-2000:]
    assert out.read_bytes() == tiny[split].read_bytes()  # hence equal statistics
    assert not partial.exists()
    left = [p.name for p in out.parent.iterdir() if p.name.startswith(".")]
    assert left == [f".{partial.name}.lock"]  # the killed runs' temporary files removed
    code, log = cli(tmp_path, *argv)
    assert code == 0 and "nothing to do" in log


def test_a_corrupt_checkpoint_is_named_and_never_used(tiny, tmp_path, capsys):
    out = tmp_path / "train.safetensors"
    partial = out.with_name(out.name + ".partial")
    argv = ["collect", tiny["model"], *tiny["common"], "--out", out]
    assert cli(tmp_path, *argv, fault="wrote:*/train.safetensors.partial:2")[0] == KILLED
    good = partial.read_bytes()
    header = 8 + int.from_bytes(good[:8], "little")
    flipped = bytearray(good)
    flipped[header + (len(good) - header) // 2] ^= 0x10  # one bit of the saved state
    cursor = good.replace(b'"cursor":"16"', b'"cursor":"17"')  # one bit of the cursor
    assert cursor != good
    for name, bad in {
        "truncated": good[: len(good) - 100],
        "bit flip": bytes(flipped),
        "cursor": cursor,
    }.items():
        partial.write_bytes(bad)
        capsys.readouterr()
        assert main([str(a) for a in argv]) == 2, name
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), (name, err)
        assert str(partial) in err[0] and "delete it" in err[0], (name, err)
        assert not out.exists() and partial.read_bytes() == bad, name
    partial.unlink()  # the fix the message gives
    assert cli(tmp_path, *argv)[0] == 0
    assert out.read_bytes() == tiny["train"].read_bytes()


def test_a_corrupt_output_is_reported_not_taken_as_done(tiny, tmp_path, capsys):
    out = tmp_path / "train.safetensors"
    good = tiny["train"].read_bytes()
    flipped = bytearray(good)
    flipped[-20] ^= 0x01
    argv = ["collect", tiny["model"], *tiny["common"], "--out", out]
    for bad in (good[:-50], bytes(flipped)):
        out.write_bytes(bad)
        capsys.readouterr()
        assert main([str(a) for a in argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(out) in err[0] and "delete it" in err[0], err
    out.unlink()
    assert cli(tmp_path, *argv)[0] == 0
    assert out.read_bytes() == good


# ------------------------------------------------------------------------ data prepare

PREPARE = ["--tokens", "10000", "--seq-len", "32", "--vocab-size", "300"]


def files(path: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared") / "data"
    assert main(["data", "prepare", "--out", str(out), *PREPARE]) == 0
    return out


def test_data_prepare_killed_mid_write_leaves_nothing_and_reruns(prepared, tmp_path):
    out = tmp_path / "data"
    argv = ["data", "prepare", "--out", out, *PREPARE]
    for fault in ("data.chunks:3", "write-dir:*"):  # train.npy half written; all but renamed
        code, log = cli(tmp_path, *argv, fault=fault)
        assert code == KILLED, (fault, log[-2000:])
        assert not out.exists(), fault
        assert [p.name for p in tmp_path.glob(".data.*.tmp")], "the staging dir was left"
    busy = tmp_path / ".data.v2.abcd1234.tmp"  # another prepare's, into data.v2
    busy.mkdir()
    code, log = cli(tmp_path, *argv)
    assert code == 0, log[-2000:]
    assert files(out) == files(prepared)
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".data."))
    assert left == [".data.lock", busy.name]  # the killed runs' staging dirs were removed
    meta = json.loads((out / "meta.json").read_text())
    assert all(len(meta["splits"][s]["sha256"]) == 64 for s in ("train", "validation"))
    assert assert_nothing_partial(out) > 3


def _flip_digit(text: str, after: str) -> str:
    """``text`` with the low bit of the first digit after ``after`` flipped ('3' → '2')."""
    i = text.index(after) + len(after)
    while not text[i].isdigit():
        i += 1
    return text[:i] + chr(ord(text[i]) ^ 1) + text[i + 1 :]


def test_corrupt_data_is_named_and_never_used(prepared, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("train.npy", "validation.npy", "meta.json"):
        (data / name).write_bytes((prepared / name).read_bytes())
    meta = json.loads((prepared / "meta.json").read_text())
    model = save_model(tmp_path / "model", "gpt2", vocab=meta["vocab_size"])
    argv = ["collect", str(model), "--data", str(data), "--device", "cpu"]
    argv += ["--out", str(tmp_path / "s.safetensors")]
    good = (data / "train.npy").read_bytes()
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0x01  # a token id ± 1: still a valid array
    meta_text = (prepared / "meta.json").read_text()
    cases = {
        "truncated split": ("train.npy", good[: len(good) - 4 * 32]),
        "bit-flipped split": ("train.npy", bytes(flipped)),
        "truncated meta.json": ("meta.json", meta_text[: len(meta_text) // 2].encode()),
        "bit-flipped meta.json": ("meta.json", _flip_digit(meta_text, '"vocab_size": ').encode()),
    }
    for name, (file, bad) in cases.items():
        (data / file).write_bytes(bad)
        capsys.readouterr()
        assert main(argv) == 2, name
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), (name, err)
        assert str(data / file) in err[0] and "data prepare" in err[0], (name, err)
        (data / file).write_bytes((prepared / file).read_bytes())
    assert open_split(data, "train", meta["vocab_size"]).shape[0] == meta["S"]  # intact


def test_a_data_dir_without_checksums_still_loads(tmp_path):
    data = data_dir(tmp_path / "data")  # tests/tiny.py's: meta.json records no sha256
    assert open_split(data, "train", VOCAB).shape == (24, 20)
    (data / "meta.json").unlink()  # collect reads only {split}.npy
    assert open_split(data, "validation", VOCAB).shape == (8, 20)


# ------------------------------------------------------------------------ metrics.json


def test_corrupt_metrics_json_is_named_by_analyze_and_inspect(tiny, tmp_path, capsys):
    run = tmp_path / "run"
    (run / "stats").mkdir(parents=True)
    for split in ("train", "validation"):
        (run / "stats" / f"{split}.safetensors").write_bytes(tiny[split].read_bytes())
    stats = run / "stats" / "train.safetensors"
    assert main(["measure", str(stats), "--classifier", str(tiny["model"]), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    metrics = run / "metrics.json"
    recorded = json.loads(metrics.read_text())
    assert CHECKSUM not in printed and recorded.pop(CHECKSUM) and recorded.keys() == printed.keys()
    token = str(pd.read_parquet(run / "classes.parquet")["token_id"].iloc[0])
    assert main(["inspect", str(run), "--tokens", token]) == 0
    text = metrics.read_text()
    for name, bad in {
        "truncated": text[: len(text) // 2],
        "bit flip": _flip_digit(text, '"nc1_cdnv": '),
        "not JSON": "\x00" * 10,
    }.items():
        metrics.write_text(bad)
        for argv in (["analyze", str(run), "--json"], ["inspect", str(run), "--tokens", token]):
            capsys.readouterr()
            assert main(argv) == 2, (name, argv[0])
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and err[0].startswith("error: "), (name, argv[0], err)
            assert str(metrics) in err[0] and "measure" in err[0], (name, argv[0], err)
    metrics.write_text(text)


# ------------------------------------------------------------------------------ sweep

GRID = """
name = "faults"
[data]
corpus = "embedded"
tokens = 12_000
seq_len = 32
vocab_size = 300
[train]
widths = [8]
depths = [1]
epochs = [2]
measure_epochs = [1, 2]
[train.options]
batch_size = 16
lr = 3e-3
allow_any_size = true
checkpoint_every = 6
device = "cpu"
[collect]
batch_size = 8
device = "cpu"
checkpoint_every = 16
"""
CELL = "runs/Stories-01x0008_02d"  # measured after epoch 2 (here) and 1 (epoch-1/)


def test_sweep_killed_in_every_stage_ends_as_an_uninterrupted_sweep(tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID)
    ref = tmp_path / "ref"
    assert cli(tmp_path, "sweep", grid, "--out", ref)[0] == 0
    out = tmp_path / "out"
    run = out / CELL
    argv = ["sweep", grid, "--out", out]

    def training() -> bool:  # the first train checkpoint is there
        return (run / "checkpoint").is_dir() and any((run / "checkpoint").iterdir())

    kills = [
        (None, training),  # mid-training (train/loop.py has no fault points of its own)
        ("write:*/epoch-1", None),  # the epoch-1 model written, not yet renamed
        ("write:*/eval.json", None),  # the model saved, the run not yet marked finished
        ("wrote:*/train.safetensors.partial", None),  # collect train, after a checkpoint
        ("stage:collect", None),  # between collect train and collect validation
        ("write:*/validation.safetensors", None),  # collect validation, not yet renamed
        ("write:*/classes.parquet", None),  # measure, half its outputs
        ("write:*/metrics.json", None),  # measure, the last output
    ]
    for fault, when in kills:
        code, log = cli(tmp_path, *argv, fault=fault, kill_when=when)
        assert code == KILLED, (fault, log[-3000:])
        assert assert_nothing_partial(out) > 0
    assert not (run / "metrics.json").exists()
    code, log = cli(tmp_path, *argv)
    assert code == 0, log[-3000:]
    assert assert_nothing_partial(out) > 0
    for model in (CELL, f"{CELL}/epoch-1"):
        weights = "model.safetensors" if model != CELL else "model/model.safetensors"
        for name in (weights, "stats/train.safetensors", "stats/validation.safetensors"):
            assert_same_stats(ref / model / name, out / model / name)
        for name in ("eval.json", "metrics.json"):
            assert_same_json(ref / model / name, out / model / name)
        a, b = (pd.read_parquet(d / model / "classes.parquet") for d in (ref, out))
        pd.testing.assert_frame_equal(a, b, rtol=1e-12, atol=0)
    for split in ("train", "validation"):
        assert (ref / "data" / f"{split}.npy").read_bytes() == (
            out / "data" / f"{split}.npy"
        ).read_bytes()
    assert not list((out / CELL / "stats").glob("*.partial"))
