"""Where sweep jobs run: here, one after another (``local``), or as SLURM jobs.

A job is one training run with the models it gives (its epoch models and its last), or
one Hugging Face model measured as it is. The SLURM executor uses ``submitit``
(``pip install 'lingcollapse[slurm]'``): one job per unit, each with time for its
training in the spirit of the paper's Appendix C (up to 8 hours an epoch on one A100 for
the largest models) and a collection per model (Appendix D: up to 6 hours a pass), and
one final analyze/report job that starts after every other succeeded (``afterok``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from lingcollapse.errors import UserError
from lingcollapse.progress import progress
from lingcollapse.sweep import stages
from lingcollapse.sweep.grid import Grid, Model, Run

log = logging.getLogger(__name__)


def run_local(grid: Grid, out: Path) -> None:
    stages.prepare_data(grid, out)
    with progress(total=len(grid.models), desc="sweep", unit="model") as bar:
        for run, models in grid.jobs():
            bar.set_postfix_str(run.name if run else models[0].name, refresh=True)
            try:
                stages.run_job(grid, run, models, out)
            except UserError as err:
                raise UserError(f"{run.name if run else models[0].name}: {err}") from None
            bar.update(len(models))
            log.info("sweep: %s measured", ", ".join(m.name for m in models))
    stages.analyze(grid, out)


def job_hours(grid: Grid, run: Run | None, models: list[Model]) -> float:
    """Wall-clock budget of one job: its training, plus collection for each model."""
    per_epoch = float(grid.slurm.get("hours_per_epoch", 8.0))
    collect = float(grid.slurm.get("collect_hours", 6.0))
    return (run.epochs if run else 0) * per_epoch + collect * len(models)


def run_slurm(grid: Grid, out: Path, cluster: str | None = None) -> list:
    """Submit the sweep; returns the submitit jobs (runs and hub models first, then
    analyze).

    ``cluster`` is submitit's: None picks SLURM when present; "debug" runs the jobs in
    this process when their results are asked for (used by the tests).
    """
    try:
        import submitit
    except ImportError:
        raise UserError(
            "the slurm executor needs submitit: pip install 'lingcollapse[slurm]'"
        ) from None
    stages.prepare_data(grid, out)  # once, here, before the jobs need it
    executor = submitit.AutoExecutor(folder=out / "slurm" / "%j", cluster=cluster)
    base = _resources(grid)
    jobs = []
    for run, models in grid.jobs():
        name = run.name if run else models[0].name
        minutes = int(60 * job_hours(grid, run, models))
        executor.update_parameters(**base, name=f"lc-{name}", timeout_min=minutes)
        jobs.append(executor.submit(stages.run_job, grid, run, models, out))
    ids = [job.job_id for job in jobs]
    executor.update_parameters(
        **{**base, "gpus_per_node": 0},
        name="lc-analyze",
        timeout_min=120,
        slurm_additional_parameters={"dependency": "afterok:" + ":".join(ids)},
    )
    final = executor.submit(stages.analyze, grid, out)
    log.info("sweep: submitted %d jobs and analyze job %s", len(ids), final.job_id)
    return [*jobs, final]


def _resources(grid: Grid) -> dict:
    s = grid.slurm
    params = {
        "gpus_per_node": int(s.get("gpus_per_node", 1)),
        "cpus_per_task": int(s.get("cpus_per_task", 8)),
        "mem_gb": int(s.get("mem_gb", 64)),
        "slurm_array_parallelism": int(s.get("max_parallel", 64)),
    }
    for key in ("partition", "account", "qos", "constraint"):
        if key in s:
            params[f"slurm_{key}"] = s[key]
    return params
