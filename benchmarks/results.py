"""Benchmark results as data: each benchmark writes ``benchmarks/results/NAME.json``, and
the README's benchmark table is rendered from those files (``scripts/render_benchmarks.py``),
so a figure in the README is always one a benchmark wrote, with the command, commit and
machine that produced it.

A results file holds::

    {"benchmark": NAME, "command": "python benchmarks/...", "commit": "abc1234",
     "dirty": false, "date": "2026-12-01", "machine": {...},
     "row": {"what": ..., "result": ..., "goal": ...},   # the README table's row
     "results": {...}}                                    # every number measured
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
_CODE = ("src", "benchmarks/*.py", "scripts", "pyproject.toml")


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def machine() -> dict:
    """What the numbers were measured on."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def record(name: str, row: dict, results: dict, argv: list[str] | None = None) -> Path:
    """Write ``benchmarks/results/NAME.json`` (atomically) and return its path."""
    argv = sys.argv if argv is None else argv
    script = Path(argv[0]).resolve()
    try:
        shown = script.relative_to(ROOT)
    except ValueError:
        shown = script
    record = {
        "benchmark": name,
        "command": " ".join(["python", str(shown), *map(shlex.quote, argv[1:])]),
        "commit": _git("rev-parse", "--short", "HEAD"),
        # the code measured differs from the commit (docs and results files aside)
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no", "--", *_CODE)),
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "row": row,
        "results": results,
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def load_all() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))]
