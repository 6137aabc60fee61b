"""``lingcollapse sweep GRID.toml`` and ``lingcollapse demo``: corpus to report in one go."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from lingcollapse.progress import add_log_every

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="run a grid of models through every stage, then analyze",
        description="Run every cell of GRID (a TOML file, or the name of a bundled grid: "
        "paper, pythia, llms, demo, demo-quick; see --list) through data prepare "
        "→ train → collect train → collect validation → measure, then analyze and report. "
        "Stages whose artifacts are complete are skipped, so a killed sweep continues where "
        "it stopped when run again.",
    )
    p.add_argument(
        "grid", nargs="?", help="grid file (.toml), or a bundled grid's name (e.g. paper)"
    )
    p.add_argument("--list", action="store_true", help="list the bundled grids and exit")
    p.add_argument("--out", type=Path, help="output dir (default: sweeps/NAME)")
    p.add_argument("--executor", choices=["local", "slurm"], help="override executor.kind")
    p.add_argument(
        "--plan",
        action="store_true",
        help="do no work: print the runs it would train, the models it would measure "
        "and an estimate of their compute; for hub models that declare their config, the "
        "GPUs, memory, passes and hours their jobs are sized with",
    )
    p.add_argument("--json", action="store_true", help="with --plan: print the plan as JSON")
    p.set_defaults(func=run_sweep)
    add_log_every(p)
    d = sub.add_parser(
        "demo",
        help="the main job: the paper's study in miniature, offline",
        description="Generate the built-in story corpus, train a small grid of GPT-Neo "
        "models, collect, measure, analyze and write the report (results.csv, "
        "correlations.json, figures/, report.html).",
    )
    d.add_argument("--out", type=Path, default=Path("demo-out"), help="output dir")
    d.add_argument("--quick", action="store_true", help="a handful of tiny models (≤ 90 s)")
    d.set_defaults(func=run_demo)
    add_log_every(d)


def run_sweep(args: argparse.Namespace) -> int:
    from lingcollapse.errors import UserError
    from lingcollapse.sweep import bundled
    from lingcollapse.sweep.grid import load_grid

    if args.list:
        for name in bundled.names():
            print(f"{name:<12} {bundled.summary(name)}")
        return 0
    if args.grid is None:
        raise UserError("give a grid: a .toml file or a bundled grid's name (sweep --list)")
    if args.json and not args.plan:
        raise UserError("--json prints the plan: give it with --plan")
    grid = load_grid(bundled.resolve(args.grid))
    out = args.out or Path("sweeps") / grid.name
    if args.plan:
        return _plan(grid, out, args.json)
    return _run(grid, out, args.executor or grid.executor)


def _plan(grid, out: Path, as_json: bool) -> int:
    from lingcollapse.io import to_json
    from lingcollapse.sweep.plan import format_plan, plan

    found = plan(grid, out)
    print(to_json(found, indent=2) if as_json else format_plan(found))
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from lingcollapse.sweep import bundled
    from lingcollapse.sweep.grid import load_grid

    grid = load_grid(bundled.path("demo-quick" if args.quick else "demo"))
    return _run(grid, args.out, "local")


def _run(grid, out: Path, executor: str) -> int:
    from lingcollapse.errors import UserError
    from lingcollapse.io import exclusive
    from lingcollapse.sweep import executors, stages

    start = time.perf_counter()
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file: give a directory for the runs and results")
    stages.check(grid, out)  # every stage's options, before anything is written
    out.mkdir(parents=True, exist_ok=True)
    with exclusive(out / "sweep.json", "sweep"):
        stages.record(grid, out)
        if executor == "slurm":
            *cells, final = executors.run_slurm(grid, out)
            arrays = sorted({executors.array_id(j.job_id) for j in cells})
            print(
                f"submitted {len(cells)} cells as job arrays {', '.join(arrays)} and the "
                f"analyze job {final.job_id}; results will be in {out}"
            )
            return 0
        executors.run_local(grid, out)
    report = out / "report.html"
    print(
        f"{len(grid.runs)} runs trained, {len(grid.models)} models measured in "
        f"{time.perf_counter() - start:.0f} s; "
        + (f"report: {report}" if report.is_file() else "too few models for a report (3)")
    )
    return 0
