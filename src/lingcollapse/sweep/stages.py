"""The stages of a sweep cell, each through the command line's own contract.

Every stage is the same call a user would type (``data prepare``, ``train``,
``collect``, ``measure``, ``analyze``, ``report``), run in-process. Each is idempotent:
it is skipped when its artifact is complete and resumed or redone when it is not, so a
killed sweep continues where it stopped by running the same command again.
"""

from __future__ import annotations

import logging
from pathlib import Path

from lingcollapse import faults
from lingcollapse.errors import UserError
from lingcollapse.io import read_json, write_json
from lingcollapse.sweep.grid import Cell, Grid

log = logging.getLogger(__name__)


def command(argv: list[str]) -> None:
    """Run one ``lingcollapse`` command in-process; bad input propagates as UserError."""
    from lingcollapse.cli import build_parser

    args = build_parser().parse_args([str(a) for a in argv])
    code = args.func(args)
    if code:
        raise UserError(f"`lingcollapse {' '.join(map(str, argv[:2]))}` exited with {code}")
    faults.point(f"stage:{argv[0]}")


def options(table: dict) -> list[str]:
    """``{"batch_size": 8, "covariance": True}`` → ``--batch-size 8 --covariance``."""
    argv: list[str] = []
    for key, value in table.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value is not False and value is not None:  # 0 == False, yet 0 is a value
            argv += [flag, str(value)]
    return argv


def check(grid: Grid, out: Path) -> None:
    """Parse and validate every command line the sweep will run, before any work: a bad
    value in any section is one error now, not a failure hours into the sweep (when a
    corrected grid would no longer match the runs already made)."""
    from lingcollapse.cli import build_parser

    parser = build_parser()
    data = out / "data"
    argvs = [_data_argv(grid, data)]
    for cell in grid.cells:
        run = out / "runs" / cell.name
        model = run if cell.trained else cell.hub_id
        argvs += [_train_argv(grid, cell, run, data)] if cell.trained else []
        argvs += [*_collect_argvs(grid, cell, run, data, model), _measure_argv(grid, cell, run)]
    argvs.append(_analyze_argv(grid, [out / "runs"], out))
    for argv in argvs:
        try:
            _validate(parser.parse_args([str(a) for a in argv]))
        except UserError as err:
            raise UserError(f"the grid's [{argv[0]}] options: {err}") from None


def _validate(args) -> None:
    """Build a command's config without running it: each config checks its own values."""
    from dataclasses import fields

    from lingcollapse.analysis.correlation import check_permutations
    from lingcollapse.collect.run import CollectConfig
    from lingcollapse.data.prepare import PrepareConfig
    from lingcollapse.metrics import conventions
    from lingcollapse.train.loop import TrainConfig

    configs = {"data": PrepareConfig, "train": TrainConfig, "collect": CollectConfig}
    if args.command in configs:
        cls = configs[args.command]
        cls(**{f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)})
    elif args.command == "measure":
        conventions.resolve(args.preset, min_count=args.min_count, cdnv_power=args.cdnv_power)
    elif args.command == "analyze":
        check_permutations(args.permutations)


def prepare_data(grid: Grid, out: Path) -> Path:
    """The sweep's shared data dir (``OUT/data``), made once."""
    data = out / "data"
    if (data / "meta.json").is_file():
        return data
    log.info("sweep: preparing data in %s", data)
    command(_data_argv(grid, data))
    return data


def _data_argv(grid: Grid, data: Path) -> list:
    return ["data", "prepare", "--out", data, *options(grid.data)]


def run_cell(grid: Grid, cell: Cell, out: Path, data: Path) -> Path:
    """Train (or fetch), collect train and validation stats, and measure one cell."""
    run = out / "runs" / cell.name
    model = train_cell(grid, cell, run, data) if cell.trained else cell.hub_id
    stats = run / "stats"
    for argv in _collect_argvs(grid, cell, run, data, model):
        _quietly(command, argv)
    if not cell.trained:
        write_json(run / "config.json", cell.identity())
    if _fresh(
        run / "metrics.json", [stats / "train.safetensors", stats / "validation.safetensors"]
    ):
        return run
    _quietly(command, _measure_argv(grid, cell, run))
    return run


def _collect_argvs(grid: Grid, cell: Cell, run: Path, data: Path, model) -> list[list]:
    """The train pass, then the validation pass against its stats."""
    stats = run / "stats"
    common = ["--data", data, *options({k: v for k, v in grid.collect.items() if k != "min_count"})]
    if cell.revision:
        common += ["--revision", cell.revision]
    val = ["--split", "validation", "--train-stats", stats / "train.safetensors"]
    if "min_count" in grid.collect:
        val += ["--min-count", str(grid.collect["min_count"])]
    return [
        ["collect", model, "--out", stats / "train.safetensors", *common],
        ["collect", model, "--out", stats / "validation.safetensors", *common, *val],
    ]


def _measure_argv(grid: Grid, cell: Cell, run: Path) -> list:
    argv = ["measure", run / "stats" / "train.safetensors", "--out", run, "--json"]
    argv += options(grid.measure)
    return argv if cell.trained else [*argv, "--classifier", cell.hub_id]


def _fresh(artifact: Path, inputs: list[Path]) -> bool:
    """An artifact newer than every input it was made from is complete."""
    return artifact.is_file() and all(
        p.is_file() and p.stat().st_mtime_ns <= artifact.stat().st_mtime_ns for p in inputs
    )


def train_cell(grid: Grid, cell: Cell, run: Path, data: Path) -> Path:
    """``lingcollapse train`` for one grid cell; it resumes from its own checkpoints."""
    if not _trained(run):
        log.info("sweep: training %s", cell.name)
        _quietly(command, _train_argv(grid, cell, run, data))
    return run


def _train_argv(grid: Grid, cell: Cell, run: Path, data: Path) -> list:
    return [
        "train",
        *["--data", data, "--out", run, "--width", cell.width, "--depth", cell.depth],
        *["--epochs", cell.epochs, "--weight-decay", cell.weight_decay, "--seed", cell.seed],
        *options(grid.train_options),
    ]


def _trained(run: Path) -> bool:
    """A finished run has its model and its final evaluation."""
    return (run / "model" / "config.json").is_file() and (run / "eval.json").is_file()


def _quietly(fn, *args) -> None:
    """Keep a stage's own stdout (measure's JSON) out of the sweep's output."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        fn(*args)


def analyze(grid: Grid, out: Path) -> None:
    """Results table, correlations, figures and the report over every measured cell."""
    runs = sorted(p for p in (out / "runs").glob("*") if (p / "metrics.json").is_file())
    if len(runs) < 3:
        log.warning("sweep: %d measured run(s); correlations need at least 3", len(runs))
        return
    _quietly(command, _analyze_argv(grid, runs, out))
    command(["report", out])


def _analyze_argv(grid: Grid, runs: list[Path], out: Path) -> list:
    return ["analyze", *runs, "--out", out, "--figures", "--json", *options(grid.analyze)]


def record(grid: Grid, out: Path) -> None:
    """Write the grid beside the runs; refuse a dir that holds another sweep's runs."""
    path = out / "sweep.json"
    if path.is_file():
        previous = read_json(path, "delete it (it only records the grid) and run again")
        if previous != grid.source:
            keys = sorted(
                k for k in set(previous) | set(grid.source) if previous.get(k) != grid.source.get(k)
            )
            raise UserError(
                f"{out} holds another sweep's runs, made with other settings "
                f"(differing: {', '.join(keys)}); use another --out"
            )
        return
    write_json(path, grid.source)
