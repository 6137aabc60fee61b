"""Exact pairwise metrics at LLM scale: a GPU's tile gives the CPU's results, the tile is
sized to the device's free memory, rows reach the device in chunks, and a long pass says
its estimated time first. Without CUDA the CUDA paths run on their CPU equivalents (the
tile rule for a cuda device, the chunked move); the tests marked gpu skip."""

import json
import logging
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from lingcollapse import memory
from lingcollapse.cli import main
from lingcollapse.errors import UserError
from lingcollapse.metrics import compute, measure, pairwise, pairwise_metrics
from lingcollapse.metrics.compute import default_tile, fit_tile, rows_to
from lingcollapse.stats import ClassStats
from lingcollapse.stats.files import save_stats

GIB, MIB = memory.GIB, memory.MIB
CUDA = torch.device("cuda")
CPU = torch.device("cpu")
ROWS = ("cdnv_mean", "interference_mean", "logkernel_mean")


def llm_like_stats(classes: int, dim: int, seed: int = 0) -> tuple[ClassStats, torch.Tensor]:
    """Means of varied norms with an exact duplicate pair (degenerate: left out of Eq. 4
    and 7) and a near pair (recomputed from differences), each far apart in the class
    order, so that a 1,024 tile sees them off the diagonal and an 8,192 tile on it."""
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(1, 50, (classes,), generator=g)
    scale = torch.rand(classes, 1, generator=g, dtype=torch.float64) * 2.5 + 0.5
    means = torch.randn(classes, dim, generator=g, dtype=torch.float64) * scale + 1.0
    means[classes - 100] = means[5]
    means[classes // 2 + 300] = means[100] * (1 + 1e-5)
    m2 = counts.double() * torch.rand(classes, generator=g, dtype=torch.float64)
    weight = torch.randn(classes, dim, generator=g)  # float32, as a model's head
    return ClassStats(counts, means, m2), weight


def assert_same_results(got, want, rtol=1e-9):
    """Every metric to ``rtol`` (counts exactly) and every per-class row mean to ``rtol``
    of its column's largest value (an interference row mean can be ~0)."""
    assert got.metrics.keys() == want.metrics.keys()
    for key, value in want.metrics.items():
        if isinstance(value, float):
            assert math.isclose(got.metrics[key], value, rel_tol=rtol, abs_tol=1e-15), key
        else:
            assert got.metrics[key] == value, key
    for column in (*ROWS, "duality_cos", "dot"):
        a, b = got.classes[column].to_numpy(), want.classes[column].to_numpy()
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max(), err_msg=column)


# ---------------------------------------------------------------- a GPU's tile on the CPU


@pytest.fixture(scope="module")
def case():
    stats, weight = llm_like_stats(4500, 6)
    return stats, (weight, None), measure(stats, classifier=(weight, None), tile=1024)


@pytest.mark.parametrize("tile", [2048, 4096, pairwise.GPU_TILE])
def test_gpu_sized_tiles_give_the_cpu_results(case, tile):
    """The tile only orders the sums: 4,500 classes in tiles of 2,048 (three rows, the
    last partial), 4,096 (two) and 8,192 (one diagonal tile) give tile 1,024's metrics
    and row means to 1e-9, degenerate and near pairs included."""
    stats, classifier, want = case
    assert want.metrics["n_degenerate_pairs"] == 1
    assert_same_results(measure(stats, classifier=classifier, tile=tile), want)


def test_small_tiles_give_the_same_results(case):
    stats, classifier, want = case
    assert_same_results(measure(stats, classifier=classifier, tile=64), want)


def test_the_comparison_can_fail(case):
    """The same check tells apart a measure of slightly other means."""
    stats, classifier, want = case
    other = ClassStats(stats.counts, stats.means * (1 + 1e-7), stats.m2)
    with pytest.raises(AssertionError):
        assert_same_results(measure(other, classifier=classifier, tile=4096), want)


# ---------------------------------------------------------------- the tile for the device


@pytest.mark.parametrize(
    ("device", "classes", "free", "control", "tile"),
    [
        (CPU, 131072, 64 * GIB, False, 1024),  # the CPU's own, however much is free
        (CPU, 131072, 16 * MIB, False, 512),  # 4 · 8 · 1,024² = 32 MiB does not fit
        (CUDA, 131072, 140 * GIB, False, 8192),  # an H200: 2 GiB of tiles
        (CUDA, 131072, 5 * GIB, False, 8192),  # 2 GiB within half of 5 GiB
        (CUDA, 131072, 3 * GIB, False, 4096),  # 2 GiB is more than half of 3 GiB
        (CUDA, 131072, int(4.5 * GIB), True, 4096),  # the control's fifth tile: 2.5 GiB
        (CUDA, 3000, 400 * MIB, False, 2048),  # t = min(tile, C): 3,000² tiles do not fit
        (CUDA, 131072, 0, False, compute.MIN_TILE),  # the floor; fit_tile then says so
    ],
)
def test_default_tile(device, classes, free, control, tile):
    assert default_tile(device, classes, free, control) == tile
    if tile > compute.MIN_TILE:
        budget = free // 2 if device.type == "cuda" else free
        assert memory.tile_bytes(tile, classes, control) <= budget
        assert memory.tile_bytes(2 * tile, classes, control) > budget or tile == (
            pairwise.GPU_TILE if device.type == "cuda" else pairwise.DEFAULT_TILE
        )


@pytest.fixture
def free_on(monkeypatch):
    """available_bytes as the driver would answer for a cuda device, and the devices asked."""
    asked = []

    def set_free(free: int):
        def available(device="cpu"):
            asked.append(torch.device(device))
            return free

        monkeypatch.setattr(memory, "available_bytes", available)
        return asked

    return set_free


def test_fit_tile_on_cuda_reads_the_devices_free_memory(free_on, caplog):
    asked = free_on(140 * GIB)
    assert fit_tile(None, 131072, CUDA) == pairwise.GPU_TILE
    assert asked == [CUDA]
    assert fit_tile(16384, 131072, CUDA) == 16384  # --tile wins, beyond the default too
    asked = free_on(3 * GIB)
    with caplog.at_level(logging.INFO):
        assert fit_tile(None, 131072, CUDA) == 4096
    assert "tile of 4096 classes, to fit the 3.0 GiB free on cuda" in caplog.text
    with pytest.raises(UserError) as err:  # --tile is checked against all that is free
        fit_tile(16384, 131072, CUDA)
    assert str(err.value) == (
        "a tile of 16,384 classes needs 8.0 GiB but 3.0 GiB is free on cuda; "
        "lower --tile (e.g. 8192)"
    )


def test_the_cpu_default_is_unchanged(free_on, caplog):
    free_on(64 * GIB)
    with caplog.at_level(logging.INFO):
        assert fit_tile(None, 131072, CPU) == pairwise.DEFAULT_TILE
    assert "tile of" not in caplog.text


# ---------------------------------------------------------------- moving the rows


class _Largest(TorchDispatchMode):
    """The largest result of each op while it is active, by op name."""

    def __init__(self):
        super().__init__()
        self.numel: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if isinstance(out, torch.Tensor):
            name = func.overloadpacket.__name__
            self.numel[name] = max(self.numel.get(name, 0), out.numel())
        return out


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_rows_reach_the_device_a_chunk_at_a_time(monkeypatch, device):
    """No gather on the host is larger than a chunk (here 3 rows), whichever device the
    rows go to (meta: another device, as cuda is)."""
    x = torch.randn(50, 8)  # float32, as a classifier
    rows = torch.tensor([49, 0, 7, 7, 30, 12, 1, 2, 3, 44, 45])
    monkeypatch.setattr(memory, "MOVE_CHUNK_BYTES", 3 * 8 * 4)
    with _Largest() as seen:
        out = rows_to(x, rows, torch.device(device), torch.float64)
    assert out.device.type == device and out.dtype == torch.float64 and out.shape == (11, 8)
    assert seen.numel["index_select"] == 3 * 8
    if device == "cpu":
        assert torch.equal(out, x[rows].double())


def test_chunked_moves_change_nothing(monkeypatch, case):
    stats, classifier, want = case
    monkeypatch.setattr(memory, "MOVE_CHUNK_BYTES", 1000)  # 20 rows of 6 float64
    got = measure(stats, classifier=classifier, tile=1024)
    assert got.metrics == want.metrics
    assert got.classes.equals(want.classes)


def test_a_gpu_measure_needs_no_second_copy_on_the_host():
    """At C = 131,072, d = 4,096: the host holds the inputs and one chunk, not 4.3 GB more."""
    cpu = memory.measure_bytes(131072, 131072, 4096, 1024)
    gpu = memory.measure_bytes(131072, 131072, 4096, pairwise.GPU_TILE, gpu=True)
    inputs = 8 * 131072 * 4098 + 4 * 131072 * 4096  # stats, float32 classifier
    assert gpu.host == memory.PROCESS_BYTES + memory.ALLOCATOR_SLACK + inputs + 64 * MIB
    z = 8 * 131072 * 4096
    assert gpu.gpu == z + 2 * z  # Z, then W_S and its product: more than 2 GiB of tiles
    assert cpu.host == gpu.host - 64 * MIB + gpu.gpu  # 12 GiB


# ---------------------------------------------------------------- the time estimate


def pass_case(classes: int = 3000, dim: int = 8):
    g = torch.Generator().manual_seed(3)
    z = torch.randn(classes, dim, generator=g, dtype=torch.float64)
    return z, torch.rand(classes, generator=g, dtype=torch.float64)


NOTICE = re.compile(
    r"measure: exact pairwise pass over 21 tiles of 512 classes \(C = 3,000, d = 8\): "
    r"about \d+ s on cpu; --sample-pairs 1000000 estimates them in seconds"
)


def test_a_long_pass_says_its_estimate_first(monkeypatch, caplog):
    monkeypatch.setattr(pairwise, "NOTICE_SECONDS", 0.0)
    monkeypatch.setattr(pairwise, "CALIBRATE_TILES", 4)  # 21 tiles: some left to say it before
    said = []
    real_tile = pairwise._tile

    def tile(*args):  # which tile the notice came before
        said.append(any(NOTICE.fullmatch(r.getMessage()) for r in caplog.records))
        real_tile(*args)

    monkeypatch.setattr(pairwise, "_tile", tile)
    with caplog.at_level(logging.INFO):
        got = pairwise_metrics(*pass_case(), tile=512)
    assert said == [False] * 5 + [True] * 16
    assert got.seconds_estimate > 0


def test_a_short_pass_says_nothing(monkeypatch, caplog):
    with caplog.at_level(logging.INFO):
        got = pairwise_metrics(*pass_case(), tile=512)  # well under a minute
    assert got.seconds_estimate < pairwise.NOTICE_SECONDS
    monkeypatch.setattr(pairwise, "NOTICE_SECONDS", 0.0)
    with caplog.at_level(logging.INFO):
        one = pairwise_metrics(*pass_case(), tile=4096)  # one tile: nothing to extrapolate
    assert one.seconds_estimate is None
    assert "exact pairwise pass" not in caplog.text


def steps(monkeypatch):
    """A clock that reads 0, 1, 2, … seconds."""
    ticks = iter(range(10**6))
    monkeypatch.setattr(pairwise, "_clock", lambda: float(next(ticks)))


def test_the_estimate_is_the_time_per_pair_times_the_pairs(monkeypatch):
    """C = 3,000 in tiles of 512: rows of 512 × 5 and 440, so the pass covers
    (3,000² + 5·512² + 440²)/2 pairs. Timed: the second tile alone (a tick is ≥ 0.5 s)."""
    pairs = (3000**2 + 5 * 512**2 + 440**2) // 2
    monkeypatch.setattr(pairwise, "CALIBRATE_SECONDS", 0.5)
    monkeypatch.setattr(pairwise, "CALIBRATE_TILES", 8)
    steps(monkeypatch)
    got = pairwise_metrics(*pass_case(), tile=512)
    assert got.seconds_estimate == pytest.approx(1.0 / 512**2 * pairs, rel=1e-12)
    # With no time limit, 8 tiles are timed after the first: (0, 1..5) (the fifth 512 ×
    # 440), (1, 1), (1, 2), (1, 3), in 8 ticks.
    monkeypatch.setattr(pairwise, "CALIBRATE_SECONDS", math.inf)
    steps(monkeypatch)
    got = pairwise_metrics(*pass_case(), tile=512)
    timed = 7 * 512**2 + 512 * 440
    assert got.seconds_estimate == pytest.approx(8.0 / timed * pairs, rel=1e-12)


def test_the_estimate_is_near_the_time_taken():
    """On the real clock: within a factor of 10 of the pass's own time. A loose bound (on a
    shared 2-core machine the two have been seen 3× apart either way), which a missing
    factor still fails: the pass has 78 tiles. What is exact is the formula, above."""
    z, sigma2 = pass_case(6000, 128)
    start = pairwise._clock()
    got = pairwise_metrics(z, sigma2, tile=512)
    took = pairwise._clock() - start
    assert took / 10 < got.seconds_estimate < 10 * took, (got.seconds_estimate, took)


@pytest.mark.parametrize(
    ("seconds", "said"),
    [(45, "45 s"), (89.4, "89 s"), (1861, "31 min"), (5399, "90 min"), (9000, "2.5 h")],
)
def test_duration(seconds, said):
    assert pairwise.duration(seconds) == said


@pytest.fixture
def stats_file(tmp_path):
    stats, _ = llm_like_stats(3000, 8)
    path = tmp_path / "train.safetensors"
    save_stats(path, stats)
    return path


# The CLI in a process of its own, with the notice's threshold at 0 s, said after 5 tiles.
_CLI = (
    "import sys; from lingcollapse.metrics import pairwise; pairwise.NOTICE_SECONDS = 0.0; "
    "pairwise.CALIBRATE_TILES = 4; "
    "from lingcollapse.cli import main; sys.exit(main(sys.argv[1:]))"
)


def test_the_notice_goes_to_stderr_and_json_stays_clean(stats_file, tmp_path):
    argv = ["measure", str(stats_file), "--tile", "512", "--device", "cpu", "--json"]
    argv += ["--out", str(tmp_path / "out")]
    done = subprocess.run([sys.executable, "-c", _CLI, *argv], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["n_classes"] == 3000
    assert re.search(
        r"^measure: exact pairwise pass over 21 tiles of 512 classes \(C = 3,000, d = 8\): "
        r"about \d+ s on cpu; --sample-pairs",
        done.stderr,
        re.M,
    ), done.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is here")
def test_device_cuda_without_cuda_is_one_error_line(stats_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["measure", str(stats_file), "--device", "cuda", "--out", str(out)]) == 2
    assert capsys.readouterr().err == (
        "error: --device cuda was asked for but CUDA is not available; use --device cpu\n"
    )
    assert not out.exists()


# ---------------------------------------------------------------- the GPU benchmark

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_measure_gpu.py"
RESULTS = BENCH.parent / "results" / "measure_gpu.json"


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is here")
def test_the_gpu_benchmark_without_cuda_measures_nothing():
    before = RESULTS.read_bytes() if RESULTS.exists() else None
    done = subprocess.run([sys.executable, str(BENCH)], capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (0, "no CUDA device: nothing measured\n")
    assert (RESULTS.read_bytes() if RESULTS.exists() else None) == before


def test_the_gpu_benchmark_runs_dry_on_the_cpu():
    """Its every step on the CPU at a tiny size: the table, the GPU's tile (one tile of
    1,400) checked against the CPU's (two rows of 1,024), nothing recorded."""
    before = RESULTS.read_bytes() if RESULTS.exists() else None
    sizes = ["--vocab", "1600", "--classes", "1500", "--dim", "8", "--check-classes", "1400"]
    done = subprocess.run(
        [sys.executable, str(BENCH), "--device", "cpu", "--repeat", "1", *sizes],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "exact pairwise pass alone" in done.stdout and "on cpu, tile 1,024" in done.stdout
    diff = re.search(r"vs the CPU on 1,400 classes: max rel. diff (\S+) ", done.stdout)
    assert diff and float(diff.group(1)) <= 1e-12, done.stdout
    assert (RESULTS.read_bytes() if RESULTS.exists() else None) == before


# ---------------------------------------------------------------- on a GPU


@pytest.mark.gpu
def test_cuda_measure_equals_the_cpu_to_1e9(case):
    """The device's own tile (8,192: one tile here) against the CPU's 1,024."""
    stats, classifier, want = case
    got = measure(stats, classifier=classifier, device="cuda")
    assert_same_results(got, want)


@pytest.mark.gpu
def test_cuda_tile_fits_half_the_free_memory():
    free = memory.available_bytes(CUDA)
    tile = fit_tile(None, 131072, CUDA)
    assert tile <= pairwise.GPU_TILE and memory.tile_bytes(tile) <= free // 2


@pytest.mark.gpu
def test_cuda_pass_says_its_estimate(monkeypatch, caplog):
    monkeypatch.setattr(pairwise, "NOTICE_SECONDS", 0.0)
    z, sigma2 = pass_case()
    with caplog.at_level(logging.INFO):
        got = pairwise_metrics(z.cuda(), sigma2.cuda(), tile=512)
    assert got.seconds_estimate > 0
    assert "d = 8): about" in caplog.text and " on cuda:0; " in caplog.text
    want = pairwise_metrics(z, sigma2, tile=512)
    assert got.cdnv.value == pytest.approx(want.cdnv.value, rel=1e-9)
