"""The stages of a sweep, as data: each builds its stage's typed config and calls the
library function the command line calls (never the command line itself).

``data prepare`` → :func:`~lingcollapse.data.prepare.prepare`, ``train`` →
:func:`~lingcollapse.train.loop.train`, ``collect`` → :func:`~lingcollapse.collect.run.collect`,
``measure`` → :func:`~lingcollapse.metrics.job.measure_files`, ``analyze`` →
:func:`~lingcollapse.analysis.job.analyze`, ``report`` →
:func:`~lingcollapse.analysis.report.write_report`. Every stage is idempotent: skipped
when its artifact is complete, resumed or redone when it is not, so a killed sweep
continues where it stopped when the same command runs again. :func:`check` builds every
config of every model before any work, so a bad option is one error now, not hours in.
"""

from __future__ import annotations

import logging
import re
from dataclasses import fields
from pathlib import Path

from lingcollapse import faults
from lingcollapse.analysis.job import AnalyzeConfig
from lingcollapse.collect.run import CollectConfig
from lingcollapse.data.prepare import PrepareConfig
from lingcollapse.errors import UserError
from lingcollapse.io import read_json, write_json
from lingcollapse.metrics.job import MeasureConfig
from lingcollapse.sweep.grid import Grid, Model, Run
from lingcollapse.train.config import TrainConfig

log = logging.getLogger(__name__)

_TYPES = (("bool", bool), ("int", int), ("float", int | float), ("str", str), ("Path", str))


def _config(cls, section: str, options: dict, **fixed):
    """``cls(**fixed, **options)`` with each grid option's type checked first (TOML
    gives typed values; a string where a number belongs is named, not a traceback)."""
    hints = {f.name: str(f.type) for f in fields(cls)}
    for key, value in options.items():
        hint = hints[key]
        if value is None and "None" in hint:
            continue
        kinds = [t for name, t in _TYPES if re.search(rf"\b{name}\b", hint)]
        kinds += [list] if "list" in hint else []
        wrong_bool = isinstance(value, bool) and "bool" not in hint
        if wrong_bool or not any(isinstance(value, k) for k in kinds):
            raise UserError(f"the grid's [{section}] {key} = {value!r} is not a {hint}")
    try:
        return cls(**fixed, **options)
    except UserError as err:
        raise UserError(f"the grid's [{section}] options: {err}") from None


def data_config(grid: Grid, out: Path, tokenizer: str | None = None) -> PrepareConfig:
    """``[data]`` into ``OUT/data``; with ``tokenizer`` (a ``[[models]]`` entry's own,
    when it is not [data]'s), the same corpus tokenised by it into ``OUT/data-<name>``."""
    shared = _config(PrepareConfig, "data", grid.data, out=out / "data")
    if tokenizer is None or tokenizer == shared.tokenizer:
        return shared
    options = {k: v for k, v in grid.data.items() if k not in ("tokenizer", "vocab_size")}
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", tokenizer).strip("_")
    return _config(PrepareConfig, "data", options, out=out / f"data-{name}", tokenizer=tokenizer)


def data_dir(grid: Grid, model: Model, out: Path) -> Path:
    """The data dir whose token ids ``model`` reads (its tokenizer's)."""
    return Path(data_config(grid, out, model.tokenizer).out)


def train_config(grid: Grid, run: Run, out: Path) -> TrainConfig:
    return _config(
        TrainConfig,
        "train",
        grid.train_options,
        data=str(out / "data"),
        out=str(out / "runs" / run.name),
        width=run.width,
        depth=run.depth,
        epochs=run.epochs,
        weight_decay=run.weight_decay,
        seed=run.seed,
        save_epochs=run.save_epochs,
    )


def collect_configs(grid: Grid, model: Model, out: Path) -> list[CollectConfig]:
    """The train pass, then the validation pass against its stats."""
    stats = model.path(out) / "stats"
    data = str(data_dir(grid, model, out))
    common = {"model": model.source(out), "data": data, "revision": model.revision}
    passes = [
        {"split": "train", "out": str(stats / "train.safetensors")},
        {
            "split": "validation",
            "out": str(stats / "validation.safetensors"),
            "train_stats": str(stats / "train.safetensors"),
        },
    ]
    nc4 = dict(grid.collect)  # min_count chooses NC4's classes: the validation pass's alone
    train = {k: v for k, v in nc4.items() if k != "min_count"}
    return [
        _config(CollectConfig, "collect", train if p["split"] == "train" else nc4, **common, **p)
        for p in passes
    ]


def measure_config(
    grid: Grid, model: Model, out: Path, train_stats: Path | None = None
) -> MeasureConfig:
    """Of the last layer's stats, or of ``train_stats`` (an inner layer's)."""
    return _config(
        MeasureConfig,
        "measure",
        grid.measure,
        train_stats=train_stats or model.path(out) / "stats" / "train.safetensors",
        out=model.path(out),
        classifier=model.hub_id,  # a trained model's own is found beside its stats
    )


def analyze_config(grid: Grid, inputs: list[Path], out: Path) -> AnalyzeConfig:
    """Figures included, and Figure 4 from the sweep's data dir (when it made one)."""
    counts = out / "data" if grid.data else None
    return _config(
        AnalyzeConfig,
        "analyze",
        grid.analyze,
        inputs=inputs,
        out=out,
        figures=True,
        class_counts=counts,
    )


def check(grid: Grid, out: Path) -> None:
    """Build every config the sweep will use, without running any (each checks its own
    values): a bad option anywhere is one error before any work."""
    data_config(grid, out)
    for run, models in grid.jobs():
        if run is not None:
            train_config(grid, run, out)
        for model in models:
            data_config(grid, out, model.tokenizer)
            collect_configs(grid, model, out)
            measure_config(grid, model, out)
    analyze_config(grid, [], out)


def prepare_data(grid: Grid, out: Path) -> Path:
    """The sweep's shared data dir (``OUT/data``), and one per other tokenizer that a
    ``[[models]]`` entry names, each made once; returns the shared one."""
    from lingcollapse.data.prepare import prepare

    configs = [data_config(grid, out), *(data_config(grid, out, m.tokenizer) for m in grid.models)]
    for cfg in {Path(c.out): c for c in configs}.values():
        if not (Path(cfg.out) / "meta.json").is_file():
            log.info("sweep: preparing data in %s", cfg.out)
            prepare(cfg)
            faults.point("stage:data")
    return out / "data"


def run_job(grid: Grid, run: Run | None, models: list[Model], out: Path) -> None:
    """Train a run (if any), then collect and measure each of its models."""
    if run is not None:
        train_run(grid, run, out)
    for model in models:
        measure_model(grid, model, out)


def train_run(grid: Grid, run: Run, out: Path) -> Path:
    """Train one run, keeping the epochs its models are measured after; it resumes from
    its own checkpoints, and a finished run is skipped."""
    from lingcollapse.train.loop import train

    path = out / "runs" / run.name
    if not _trained(path, run):
        log.info("sweep: training %s", run.name)
        train(train_config(grid, run, out))
        faults.point("stage:train")
    return path


def _trained(path: Path, run: Run) -> bool:
    """A finished run has its model, its epoch models and its final evaluation."""
    dirs = [path / "model", *(path / f"epoch-{e}" for e in run.save_epochs)]
    return (path / "eval.json").is_file() and all((d / "config.json").is_file() for d in dirs)


def measure_model(grid: Grid, model: Model, out: Path) -> Path:
    """Collect the train and validation stats of one model, then measure every layer
    collected (``[collect] layers``): ``metrics.layerNN.json``, then ``metrics.json``."""
    from lingcollapse.collect.run import collect
    from lingcollapse.metrics.job import measure_files
    from lingcollapse.metrics.result import output_paths
    from lingcollapse.sweep.resources import check_declared

    path = model.path(out)
    check_declared(grid, model)  # the config the plan sized its job from is the real one
    for cfg in collect_configs(grid, model, out):
        collect(cfg)  # a finished pass returns at once
        faults.point("stage:collect")
    if not model.trained:
        write_json(path / "config.json", model.identity())
    stats = path / "stats"
    for tag in layer_tags(stats):
        inputs = [stats / f"train{tag}.safetensors", stats / f"validation{tag}.safetensors"]
        if _fresh(output_paths(path, tag)[1], inputs):
            continue
        outcome = measure_files(measure_config(grid, model, out, inputs[0]))
        for warning in outcome.warnings:
            log.warning("warning: %s%s: %s", model.name, tag, warning)
        if not tag:
            report_measured(grid, model, out, outcome.metrics)
        faults.point("stage:measure")
    return path


def report_measured(grid: Grid, model: Model, out: Path, metrics: dict) -> None:
    """A trained model's NC metrics to its run's ``report_to`` backends (``[train]
    options``), at the step that ends the epoch it was measured after."""
    from lingcollapse.train.tracking import parse_report_to, report_measured

    backends = parse_report_to(grid.train_options.get("report_to"))
    if model.run is not None and backends:
        run = out / "runs" / model.run.name
        report_measured(backends, run, model.run.name, model.epoch, metrics)


def layer_tags(stats: Path) -> list[str]:
    """The layers a model's stats dir holds: ``.layerNN`` of the inner ones, then ``""``
    for the last (measured last, so its metrics.json marks the model done)."""
    inner = [p.name.removeprefix("train").removesuffix(".safetensors")
             for p in stats.glob("train.layer*.safetensors")]  # fmt: skip
    return [*sorted(inner), ""]


def _fresh(artifact: Path, inputs: list[Path]) -> bool:
    """An artifact newer than every input it was made from is complete."""
    return artifact.is_file() and all(
        p.is_file() and p.stat().st_mtime_ns <= artifact.stat().st_mtime_ns for p in inputs
    )


def analyze(grid: Grid, out: Path) -> None:
    """Results table, correlations, figures and the report over the grid's measured
    models (only those: a dir holding other runs does not mix them in)."""
    from lingcollapse.analysis.job import analyze as correlate
    from lingcollapse.analysis.report import write_report

    measured = [m.path(out) for m in grid.models if (m.path(out) / "metrics.json").is_file()]
    if len(measured) < 3:
        log.warning("sweep: %d measured model(s); correlations need at least 3", len(measured))
        return
    correlate(analyze_config(grid, measured, out))
    faults.point("stage:analyze")
    write_report(out)


def record(grid: Grid, out: Path) -> None:
    """Write the grid beside the runs; refuse a dir that holds another sweep's runs."""
    path = out / "sweep.json"
    if path.is_file():
        previous = _recipe(read_json(path, "delete it (it only records the grid) and run again"))
        if previous != _recipe(grid.source):
            now = _recipe(grid.source)
            keys = sorted(k for k in set(previous) | set(now) if previous.get(k) != now.get(k))
            raise UserError(
                f"{out} holds another sweep's runs, made with other settings "
                f"(differing: {', '.join(keys)}); use another --out"
            )
        return
    write_json(path, grid.source)


def _recipe(source):
    """A recorded grid less what only decides reporting (``[train] options`` such as
    ``report_to``): those may change between a sweep and its continuation."""
    from lingcollapse.train.config import REPORTING

    train = source.get("train") if isinstance(source, dict) else None
    options = train.get("options") if isinstance(train, dict) else None
    if not isinstance(options, dict):
        return source
    kept = {k: v for k, v in options.items() if k not in REPORTING}
    return {**source, "train": {**train, "options": kept}}
