"""SLURM sweeps as job arrays, so that `max_parallel` throttles them: submitit's real
SLURM executor writes the sbatch files, a stand-in `sbatch` on PATH records them."""

import os
import re
import tomllib
from pathlib import Path

import pytest

from lingcollapse.cli import main
from lingcollapse.errors import UserError
from lingcollapse.sweep.executors import array_parallelism, job_hours, run_slurm
from lingcollapse.sweep.grid import parse_grid

submitit = pytest.importorskip("submitit")

GRID = """
name = "arr"
[data]
corpus = "embedded"
tokens = 8_000
seq_len = 32
vocab_size = 300
[train]
widths = [8, 16, 32]
depths = [1]
epochs = [1]
options = { batch_size = 32, lr = 3e-3, allow_any_size = true }
[[train.extra]]
widths = [8, 16]
epochs = [2]
measure_epochs = [1, 2]
[executor.slurm]
max_parallel = 3
"""

SBATCH = """#!/bin/sh
# A stand-in for sbatch: keep the script, answer as SLURM does.
n=$(ls "$SBATCH_LOG" | wc -l)
id=$((1000 + n))
cp "$1" "$SBATCH_LOG/$id.sh"
echo "Submitted batch job $id"
"""


@pytest.fixture
def sbatch(tmp_path, monkeypatch):
    return fake_sbatch(tmp_path, monkeypatch)


def fake_sbatch(tmp_path, monkeypatch):
    """A fake `sbatch` first on PATH (and an `srun`, which submitit looks for to decide
    it is on a cluster); returns the folder of the scripts sbatch was given."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "sbatch").write_text(SBATCH)
    (bin_ / "srun").write_text("#!/bin/sh\nexit 1\n")
    for tool in ("sbatch", "srun"):
        (bin_ / tool).chmod(0o755)
    log = tmp_path / "sbatch"
    log.mkdir()
    monkeypatch.setenv("PATH", f"{bin_}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SBATCH_LOG", str(log))
    return log


def flags(script: Path) -> dict[str, str]:
    """The `#SBATCH --key=value` lines of a submitted script."""
    return dict(re.findall(r"^#SBATCH --([\w-]+)=(.*)$", script.read_text(), re.MULTILINE))


def test_cells_go_in_arrays_throttled_by_max_parallel(tmp_path, sbatch):
    grid = parse_grid(tomllib.loads(GRID))
    jobs = run_slurm(grid, tmp_path / "out", cluster="slurm")
    scripts = sorted(sbatch.glob("*.sh"))
    assert [s.stem for s in scripts] == ["1000", "1001", "1002"]  # two arrays, then analyze
    long_, short, analyze = (flags(s) for s in scripts)
    # the 2-epoch runs: 2 × 8 h + 2 collections × 6 h; the 1-epoch runs: 8 h + 6 h
    assert long_["time"] == str(28 * 60) and short["time"] == str(14 * 60)
    # 3 slots in all: one each, the third to the array that would end last (2 × 28 h
    # in a row > 3 × 14 h), after which the longest ends in 28 h, the shortest in 42 h
    assert long_["array"] == "0-1%2" and short["array"] == "0-2%1"
    assert long_["job-name"] == "lc-arr-28h" and short["job-name"] == "lc-arr-14h"
    assert analyze["dependency"] == "afterok:1000:1001"  # every task of both arrays
    assert "array" not in analyze and analyze.get("gpus-per-node", "0") == "0"
    ids = [j.job_id for j in jobs]
    assert ids == ["1000_0", "1000_1", "1001_0", "1001_1", "1001_2", "1002"]
    # each task runs one cell, train → collect → measure (stages.run_job): the pickled
    # submissions are the grid's cells, the 2-epoch runs first
    assert len(list((tmp_path / "out" / "slurm").rglob("*_submitted.pkl"))) == 6


def test_the_cli_names_the_arrays(tmp_path, sbatch, capsys, monkeypatch):
    auto = submitit.AutoExecutor
    monkeypatch.setattr(
        submitit, "AutoExecutor", lambda folder, cluster=None: auto(folder, cluster="slurm")
    )
    (tmp_path / "g.toml").write_text(GRID)
    argv = ["sweep", str(tmp_path / "g.toml"), "--out", str(tmp_path / "o"), "--executor", "slurm"]
    assert main(argv) == 0
    assert (
        "submitted 5 cells as job arrays 1000, 1001 and the analyze job 1002"
        in capsys.readouterr().out
    )


@pytest.mark.parametrize(
    ("groups", "limit", "expected"),
    [
        # paper-like: 60 runs of 92 h, 30 of 30 h, 80 of 14 h, 64 slots
        ([(92, 60), (30, 30), (14, 80)], 64, [52, 5, 7]),
        ([(10, 2), (5, 2)], 100, [2, 2]),  # never more slots than cells
        ([(10, 4)], 3, [3]),
        ([(10, 5), (5, 5)], 2, [1, 1]),
    ],
)
def test_slots_are_shared_so_the_arrays_end_together(groups, limit, expected):
    cells = [(minutes, [object()] * n) for minutes, n in groups]
    found = array_parallelism(cells, limit)
    assert [p for _, _, p in found] == expected
    assert sum(expected) <= limit
    ends = [-(-n // p) * m for (m, n), p in zip(groups, expected, strict=True)]
    if groups[0] == (92, 60):  # 2 waves of 92 h; 6 of 30 h; 12 of 14 h: ≤ the longest,
        assert ends == [184, 180, 168]  # which no sharing of 64 slots can shorten


def test_more_arrays_than_slots_become_one_array_at_the_longest_time():
    cells = [(30, ["a", "b"]), (20, ["c"]), (10, ["d", "e"])]
    assert array_parallelism(cells, 2) == [(30, ["a", "b", "c", "d", "e"], 2)]


@pytest.mark.parametrize("value", [0, -1, "8", 2.5, True])
def test_max_parallel_must_be_a_whole_number(tmp_path, value):
    raw = tomllib.loads(GRID)
    raw["executor"]["slurm"]["max_parallel"] = value
    with pytest.raises(UserError, match="max_parallel"):
        run_slurm(parse_grid(raw), tmp_path / "out", cluster="slurm")
    assert not (tmp_path / "out").exists()  # checked before any work


def test_job_hours_are_the_arrays_time_limits():
    grid = parse_grid(tomllib.loads(GRID))
    hours = sorted({job_hours(grid, run, models) for run, models in grid.jobs()})
    assert hours == [14.0, 28.0]
