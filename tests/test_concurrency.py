"""Two processes writing one output: the second is refused, and the output is intact."""

import subprocess
import sys
from pathlib import Path

import pytest

from lingcollapse.cli import main
from lingcollapse.io import exclusive
from test_faults import GRID
from tiny import data_dir

BIN = Path(sys.executable).parent


def _files(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and p.suffix != ".lock"}


@pytest.mark.parametrize(
    ("command", "locked"),
    [
        ("train", lambda t: t / "run" / "checkpoint"),
        ("sweep", lambda t: t / "out" / "sweep.json"),
        ("data", lambda t: t / "prepared"),
    ],
)
def test_an_output_held_by_another_process_is_refused(tmp_path, capsys, command, locked):
    data = data_dir(tmp_path / "data")
    (tmp_path / "grid.toml").write_text(GRID)
    argv = {
        "train": ["train", "--data", str(data), "--out", str(tmp_path / "run"),
                  "--width", "8", "--allow-any-size", "--device", "cpu"],
        "sweep": ["sweep", str(tmp_path / "grid.toml"), "--out", str(tmp_path / "out")],
        "data": ["data", "prepare", "--corpus", "embedded", "--tokens", "5000",
                 "--seq-len", "32", "--vocab-size", "300", "--out", str(tmp_path / "prepared")],
    }[command]  # fmt: skip
    before = _files(tmp_path)
    with exclusive(locked(tmp_path)):  # flock: a second open file conflicts, as a process would
        assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "another process is writing" in err[0]
    assert _files(tmp_path) == before


def test_two_sweeps_started_together_into_one_dir(tmp_path):
    """One runs, the other is refused at once (or, started after the first finished,
    finds nothing to do); the sweep's artifacts are those of a lone sweep."""
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID)
    argv = [str(BIN / "lingcollapse"), "sweep", str(grid)]
    procs = [
        subprocess.Popen([*argv, "--out", str(tmp_path / "out")], stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes[0] == 0 and codes[1] in (0, 2), results
    if codes[1] == 2:
        refused = next(err for code, err in results if code == 2).strip().splitlines()
        assert len(refused) == 1 and "another process is writing sweep" in refused[0]
    assert main(["sweep", str(grid), "--out", str(tmp_path / "lone")]) == 0
    for name in ("results.csv", "correlations.json"):
        a, b = tmp_path / "out" / name, tmp_path / "lone" / name
        assert a.is_file() == b.is_file()
    metrics = sorted((tmp_path / "out").rglob("metrics.json"))
    assert metrics and [m.relative_to(tmp_path / "out") for m in metrics] == [
        m.relative_to(tmp_path / "lone") for m in sorted((tmp_path / "lone").rglob("metrics.json"))
    ]
