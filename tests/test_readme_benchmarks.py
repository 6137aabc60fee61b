"""The README's benchmark table is the one the benchmarks' results files give: a figure
there cannot outlive the file (and so the command, commit and machine) it came from."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEYS = {"benchmark", "command", "commit", "dirty", "date", "machine", "row", "results"}


def test_every_results_file_says_what_where_and_how():
    files = sorted((ROOT / "benchmarks" / "results").glob("*.json"))
    assert files, "no benchmark results: run the benchmarks (see the README)"
    for path in files:
        record = json.loads(path.read_text())
        assert KEYS <= set(record), path
        assert record["benchmark"] == path.stem
        assert record["command"].startswith("python benchmarks/bench_")
        assert {"what", "result", "goal"} <= set(record["row"])


def test_the_readme_table_is_rendered_from_the_results_files():
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "render_benchmarks.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
