"""Memory: the estimates bound measured peaks, and a tile or batch that would not fit is one
clear error (exit 2), not an out-of-memory crash; a default tile shrinks to fit instead."""

import logging
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from lingcollapse import memory
from lingcollapse.cli import main
from lingcollapse.collect import passes
from lingcollapse.collect import run as collect_run
from lingcollapse.collect.model import load_model
from lingcollapse.errors import UserError
from lingcollapse.metrics import compute
from lingcollapse.metrics.compute import measure
from lingcollapse.models.registry import build
from lingcollapse.stats import ClassStats
from lingcollapse.stats.files import save_stats
from tiny import data_dir, save_model

CLI = [sys.executable, "-m", "lingcollapse"]
MIB = memory.MIB


def random_stats(vocab: int, classes: int, dim: int, seed: int = 0) -> ClassStats:
    g = torch.Generator().manual_seed(seed)
    counts = torch.zeros(vocab, dtype=torch.long)
    counts[:classes] = torch.randint(1, 100, (classes,), generator=g)
    means = torch.zeros(vocab, dim, dtype=torch.float64)
    means[:classes] = torch.randn(classes, dim, generator=g, dtype=torch.float64)
    m2 = counts.double() * torch.rand(vocab, generator=g, dtype=torch.float64)
    return ClassStats(counts, means, m2)


# The bounds count the process itself as PROCESS_BYTES, measured with the CPU build of
# torch; a CUDA build maps far larger libraries (seen on an H100 machine: collect with
# --device cpu peaked at 1.9 GiB for a 0.6 GiB bound), so whole-process peaks are
# compared with the bounds on a CPU build only.
cpu_build_only = pytest.mark.skipif(
    torch.version.cuda is not None, reason="whole-process bounds are for the CPU build of torch"
)


# Linux keeps a process's ru_maxrss across exec, so a child forked straight from this
# (large, late in the suite) pytest process would report pytest's size; a small Python
# starts the command instead and reports the grandchild's peak.
_SPAWN = """
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
err = proc.stderr.read()
_, status, usage = os.wait4(proc.pid, 0)
sys.stderr.buffer.write(err)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""


def peak_rss(cmd: list[str]) -> int:
    """Peak resident bytes of one command run as a fresh process (the kernel's ru_maxrss)."""
    run = subprocess.run([sys.executable, "-c", _SPAWN, *cmd], capture_output=True, text=True)
    code, kib = map(int, run.stdout.split())
    assert code == 0, run.stderr
    return kib * 1024


def fake_free(monkeypatch, free: int) -> None:
    monkeypatch.setattr(memory, "available_bytes", lambda device="cpu": free)


# ------------------------------------------------------------ estimates vs measured


@pytest.mark.slow
@cpu_build_only
def test_measure_estimate_bounds_the_peak(tmp_path):
    """Tiles of 2,048 classes dominate (8 × 32 MiB): the estimate is above the measured
    peak of the whole process, and within 2× of it."""
    vocab, classes, dim, tile = 6000, 4000, 256, 2048
    save_stats(tmp_path / "train.safetensors", random_stats(vocab, classes, dim))
    weight = torch.randn(vocab, dim, generator=torch.Generator().manual_seed(1))
    save_file({"weight": weight}, str(tmp_path / "classifier.safetensors"))
    peak = peak_rss(
        [
            *CLI,
            "measure",
            str(tmp_path / "train.safetensors"),
            "--classifier",
            str(tmp_path / "classifier.safetensors"),
            "--tile",
            str(tile),
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    estimate = memory.measure_bytes(vocab, classes, dim, tile).host
    assert peak <= estimate <= 2 * peak, (peak / MIB, estimate / MIB)


@pytest.mark.slow
@cpu_build_only
def test_collect_estimates_bound_the_peaks(tmp_path):
    """GPT-Neo at T = 512, B = 8, collected through fused attention (SDPA): no (B, H, T, T)
    scores, so activations and statistics make the peak."""
    vocab, batch, seq_len = 2048, 8, 512
    build("gpt-neo", 64, 2, vocab, seed=0, allow_any_size=True).save_pretrained(tmp_path / "model")
    data = data_dir(tmp_path / "data", vocab=vocab, sequences=(16, 16), seq_len=seq_len)
    shape = memory.ModelShape.of(load_model(str(tmp_path / "model")).model)
    assert not shape.eager_attention and shape.heads == 16
    for split in ("train", "validation"):
        cmd = [*CLI, "collect", str(tmp_path / "model"), "--data", str(data), "--split", split]
        cmd += ["--out", str(tmp_path / f"{split}.safetensors"), "--batch-size", str(batch)]
        if split == "validation":
            cmd += ["--train-stats", str(tmp_path / "train.safetensors")]
        peak = peak_rss([*cmd, "--device", "cpu"])
        estimate = memory.collect_bytes(shape, batch, seq_len, split).host
        assert peak <= estimate <= 2 * peak, (split, peak / MIB, estimate / MIB)


@pytest.mark.slow
@cpu_build_only
def test_collect_all_layers_keeps_rows_for_the_classes_of_the_data(tmp_path):
    """V = 65,536 of which the data holds ~2,000 as targets, --layers all (3 layers): the
    estimate with rows for those classes bounds the peak within 2×, and the peak is far
    below what rows for all V would take (half their statistics would not fit in it)."""
    vocab, batch, seq_len, dim = 65536, 8, 256, 128
    build("gpt-neo", dim, 2, vocab, seed=0, allow_any_size=True).save_pretrained(tmp_path / "m")
    data = data_dir(tmp_path / "data", vocab=vocab, sequences=(16, 16), seq_len=seq_len)
    shape = memory.ModelShape.of(load_model(str(tmp_path / "m")).model)
    tokens = np.load(data / "train.npy")
    rows = passes.target_classes(tokens, range(len(tokens)), vocab).numel()
    assert rows < vocab // 10
    cmd = [*CLI, "collect", str(tmp_path / "m"), "--data", str(data), "--layers", "all"]
    cmd += ["--out", str(tmp_path / "train.safetensors"), "--batch-size", str(batch)]
    peak = peak_rss([*cmd, "--device", "cpu"])
    kw = {"layers": 3, "hidden_states": 3}
    estimate = memory.collect_bytes(shape, batch, seq_len, rows=rows, **kw).host
    every_row = memory.collect_bytes(shape, batch, seq_len, **kw).host
    assert peak <= estimate <= 2 * peak, (peak / MIB, estimate / MIB)
    full_stats = memory.stats_bytes(shape, "train", 3, vocab, False)
    assert peak < every_row - full_stats // 2, (peak / MIB, every_row / MIB)


def test_tile_bytes_and_measure_phases():
    assert memory.tile_bytes(1024) == 4 * 8 * 1024**2
    assert memory.tile_bytes(1024, classes=100) == memory.tile_bytes(100)  # t ≤ C
    z = 8 * 29233 * 1024
    # at paper scale W_S and one product beside Z are the peak, not the 1024-tiles
    assert memory.measure_device_bytes(29233, 1024, 1024) == 3 * z
    assert memory.measure_device_bytes(29233, 1024, 8192) == z + memory.tile_bytes(8192)


# ------------------------------------------------------------ what is free


def test_available_bytes_on_this_machine():
    free = memory.available_bytes("cpu")
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert 0 < free <= total


@pytest.mark.parametrize(
    ("limit", "expected"), [("1000", 1000 - 600 + 100), ("max", None), ("0", 0)]
)
def test_cgroup_limit(tmp_path, limit, expected):
    (tmp_path / "memory.max").write_text(limit + "\n")
    (tmp_path / "memory.current").write_text("600\n")
    (tmp_path / "memory.stat").write_text("anon 500\ninactive_file 100\n")
    free = memory._cgroup_free(tmp_path, "memory.max", "memory.current", "inactive_file")
    assert free == expected


def test_check_fits_is_one_clear_line(monkeypatch):
    fake_free(monkeypatch, int(3.1 * memory.GIB))
    memory.check_fits(3 * memory.GIB, "cpu", "a tile", "lower --tile")  # fits: no error
    with pytest.raises(UserError) as err:
        memory.check_fits(int(12.3 * memory.GIB), "cpu", "a tile of 8192 classes", "lower --tile")
    assert str(err.value) == (
        "a tile of 8192 classes needs 12.3 GiB but 3.1 GiB is free on cpu; lower --tile"
    )


def test_out_of_memory_errors_are_recognised():
    cpu = "[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory"
    assert memory.is_out_of_memory(RuntimeError(cpu))
    assert memory.is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert memory.is_out_of_memory(MemoryError())
    assert not memory.is_out_of_memory(RuntimeError("shape mismatch"))


# ------------------------------------------------------------ measure


@pytest.fixture
def stats_file(tmp_path):
    path = tmp_path / "train.safetensors"
    save_stats(path, random_stats(3000, 3000, 4))
    return path


def test_measure_cli_absurd_tile_is_one_error_line(stats_file, tmp_path, monkeypatch, capsys):
    fake_free(monkeypatch, 64 * MIB)
    out = tmp_path / "out"
    argv = ["measure", str(stats_file), "--tile", "100000", "--out", str(out), "--device", "cpu"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    # t = min(tile, C) = 3,000: 4 float64 tiles of 3,000² are 275 MiB; 1,024 fits in 64 MiB
    assert err == (
        "error: a tile of 100,000 classes needs 275 MiB but 64 MiB is free on cpu; "
        "lower --tile (e.g. 1024)"
    )
    assert not out.exists()


def test_measure_cli_unforeseen_out_of_memory_is_one_line(
    stats_file, tmp_path, monkeypatch, capsys
):
    def fail(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 TB")

    monkeypatch.setattr(compute, "pairwise_metrics", fail)
    assert (
        main(["measure", str(stats_file), "--out", str(tmp_path / "out"), "--device", "cpu"]) == 2
    )
    err = capsys.readouterr().err
    assert err == "error: out of memory on cpu while measuring: lower --tile or raise --min-count\n"


def test_a_default_tile_shrinks_to_fit_and_gives_the_same_metrics(monkeypatch, caplog):
    stats = random_stats(3000, 3000, 4)
    reference = measure(stats)  # tile 1024
    fake_free(monkeypatch, 16 * MIB)  # 8 × 8 × 1024² = 64 MiB does not fit, 512² does
    with caplog.at_level(logging.INFO):
        shrunk = measure(stats)
    assert "tile of 512 classes" in caplog.text
    assert shrunk.metrics == measure(stats, tile=512).metrics  # the same tile, bit for bit
    for key, value in reference.metrics.items():
        if isinstance(value, float):  # the tiles only order the sums
            assert math.isclose(shrunk.metrics[key], value, rel_tol=1e-12, abs_tol=1e-15), key
        else:
            assert shrunk.metrics[key] == value, key
    for column in ("cdnv_mean", "interference_mean", "logkernel_mean"):
        a, b = shrunk.classes[column].to_numpy(), reference.classes[column].to_numpy()
        assert abs(a - b).max() <= 1e-12 * abs(b).max(), column


def test_measure_that_cannot_fit_names_min_count(monkeypatch):
    fake_free(monkeypatch, 1024)
    with pytest.raises(
        UserError,
        match=r"^measuring 3,000 classes of width 4 needs \d+ KiB but 1 KiB is free on cpu; "
        r"raise --min-count to keep fewer classes$",
    ):
        measure(random_stats(3000, 3000, 4))


# ------------------------------------------------------------ collect


@pytest.fixture
def tiny_run(tmp_path):
    return save_model(tmp_path / "model", "gpt-neo"), data_dir(tmp_path / "data")


def collect_args(model, data, out, *extra):
    return [
        "collect",
        str(model),
        "--data",
        str(data),
        "--out",
        str(out),
        "--device",
        "cpu",
        *extra,
    ]


def test_collect_cli_batch_too_big_is_one_error_line(tiny_run, tmp_path, monkeypatch, capsys):
    model, data = tiny_run
    shape = memory.ModelShape.of(load_model(str(model)).model)
    fake_free(monkeypatch, memory.collect_work_bytes(shape, 3, 20))  # 24 sequences of T = 20
    out = tmp_path / "train.safetensors"
    assert main(collect_args(model, data, out, "--batch-size", "100000")) == 2
    err = capsys.readouterr().err
    assert re.fullmatch(
        r"error: a batch of 24 × 20 tokens needs \d+ KiB but \d+ KiB is free on cpu; "
        r"lower --batch-size \(e\.g\. 3\)\n",
        err,
    ), err
    assert not out.exists() and not out.with_name(out.name + ".partial").exists()


def test_collect_out_of_memory_keeps_the_checkpoint(tiny_run, tmp_path, monkeypatch, capsys):
    model, data = tiny_run
    out = tmp_path / "train.safetensors"
    args = collect_args(model, data, out, "--batch-size", "4", "--checkpoint-every", "4")
    real_step, calls = collect_run.add_batch, []

    def step(*a):
        calls.append(1)
        if len(calls) == 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        real_step(*a)

    monkeypatch.setattr(collect_run, "add_batch", step)
    assert main(args) == 2
    partial = out.with_name(out.name + ".partial")
    assert capsys.readouterr().err == (
        f"error: out of memory on cpu in a batch of 4 × 20 tokens: lower --batch-size (e.g. 2) "
        f"(the checkpoint {partial} at sequence 8 resumes only with --batch-size 4: delete "
        "it, or free memory and re-run)\n"
    )
    assert collect_run._saved_cursor(partial) == 8 and not out.exists()
    monkeypatch.setattr(collect_run, "add_batch", real_step)
    assert main(args) == 0  # the same command resumes and ends as an uninterrupted run
    whole = tmp_path / "whole" / "train.safetensors"
    assert main(collect_args(model, data, whole, *args[-4:])) == 0
    assert out.read_bytes() == whole.read_bytes()
