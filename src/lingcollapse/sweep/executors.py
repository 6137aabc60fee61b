"""Where sweep cells run: here, one after another (``local``), or as SLURM jobs.

The SLURM executor uses ``submitit`` (``pip install 'lingcollapse[slurm]'``): one job per
cell, each with time for its training in the spirit of the paper's Appendix C (up to 8
hours an epoch on one A100 for the largest models) and its collection passes, and one
final analyze/report job that starts after every cell succeeded (``afterok``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from lingcollapse.errors import UserError
from lingcollapse.progress import progress
from lingcollapse.sweep import stages
from lingcollapse.sweep.grid import Cell, Grid

log = logging.getLogger(__name__)


def run_local(grid: Grid, out: Path) -> None:
    # the stages' own notes ("using validation stats …") would drown the sweep's
    logging.getLogger("lingcollapse.cli.measure").setLevel(logging.WARNING)
    data = stages.prepare_data(grid, out)
    with progress(grid.cells, desc="sweep", unit="model") as bar:
        for cell in bar:
            bar.set_postfix_str(cell.name, refresh=True)
            try:
                stages.run_cell(grid, cell, out, data)
            except UserError as err:
                raise UserError(f"{cell.name}: {err}") from None
            log.info("sweep: %s measured", cell.name)
    stages.analyze(grid, out)


def cell_hours(grid: Grid, cell: Cell) -> float:
    """Wall-clock budget of one cell's job: training plus two collection passes."""
    per_epoch = float(grid.slurm.get("hours_per_epoch", 8.0))
    collect = float(grid.slurm.get("collect_hours", 6.0))
    return (cell.epochs or 0) * per_epoch + collect


def run_slurm(grid: Grid, out: Path, cluster: str | None = None) -> list:
    """Submit the sweep; returns the submitit jobs (cells first, then analyze).

    ``cluster`` is submitit's: None picks SLURM when present; "debug" runs the jobs in
    this process when their results are asked for (used by the tests).
    """
    try:
        import submitit
    except ImportError:
        raise UserError(
            "the slurm executor needs submitit: pip install 'lingcollapse[slurm]'"
        ) from None
    data = stages.prepare_data(grid, out)  # once, here, before the jobs need it
    executor = submitit.AutoExecutor(folder=out / "slurm" / "%j", cluster=cluster)
    base = _resources(grid)
    jobs = []
    for cell in grid.cells:
        executor.update_parameters(
            **base, name=f"lc-{cell.name}", timeout_min=int(60 * cell_hours(grid, cell))
        )
        jobs.append(executor.submit(stages.run_cell, grid, cell, out, data))
    ids = [job.job_id for job in jobs]
    executor.update_parameters(
        **{**base, "gpus_per_node": 0},
        name="lc-analyze",
        timeout_min=120,
        slurm_additional_parameters={"dependency": "afterok:" + ":".join(ids)},
    )
    final = executor.submit(stages.analyze, grid, out)
    log.info("sweep: submitted %d cell jobs and analyze job %s", len(ids), final.job_id)
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
