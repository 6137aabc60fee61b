"""Where sweep jobs run: here, one after another (``local``), or as SLURM job arrays.

A job (a cell of the grid) is one training run with the models it gives (its epoch
models and its last), or one Hugging Face model measured as it is; it runs its stages in
order itself (train → collect → measure, :func:`lingcollapse.sweep.stages.run_job`), so
no dependency between stages of one cell is left to the scheduler, and a cell requeued or
run again resumes where it stopped.

The SLURM executor uses ``submitit`` (``pip install 'lingcollapse[slurm]'``). Each job
has time for its training in the spirit of the paper's Appendix C (up to 8 hours an
epoch on one A100 for the largest models) and a collection per model (Appendix D: up to
6 hours a pass). Cells are submitted as job arrays (``executor.batch()``), one array per
time limit (the tasks of an array share one), because SLURM throttles only the tasks of
an array (``--array=0-N%P``): ``[executor.slurm] max_parallel`` is shared out between the
arrays (:func:`array_parallelism`), so at most that many cells run at once. One final
analyze/report job starts after every task of every array succeeded (``afterok`` on the
arrays' ids).
"""

from __future__ import annotations

import logging
from pathlib import Path

from lingcollapse.errors import UserError
from lingcollapse.progress import progress
from lingcollapse.sweep import stages
from lingcollapse.sweep.grid import Grid, Model, Run

log = logging.getLogger(__name__)

Cell = tuple[Run | None, list[Model]]


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
    base = _resources(grid)  # checked before any work
    limit = _count(grid.slurm, "max_parallel", 64, least=1)
    stages.prepare_data(grid, out)  # once, here, before the jobs need it
    executor = submitit.AutoExecutor(folder=out / "slurm" / "%j", cluster=cluster)
    jobs, arrays = [], []
    for minutes, cells, parallel in array_parallelism(_by_time(grid), limit):
        executor.update_parameters(
            **base,
            name=f"lc-{grid.name}-{minutes // 60}h",
            timeout_min=minutes,
            slurm_array_parallelism=parallel,
        )
        with executor.batch():  # one sbatch --array=0-(n-1)%parallel
            tasks = [executor.submit(stages.run_job, grid, r, m, out) for r, m in cells]
        jobs += tasks
        arrays.append(array_id(tasks[0].job_id))
        log.info("sweep: array %s of %d cells, %d at once", arrays[-1], len(cells), parallel)
    executor.update_parameters(
        **{**base, "gpus_per_node": 0},
        name=f"lc-{grid.name}-analyze",
        timeout_min=120,
        slurm_additional_parameters={"dependency": "afterok:" + ":".join(arrays)},
    )
    final = executor.submit(stages.analyze, grid, out)
    log.info("sweep: submitted %d cells and analyze job %s", len(jobs), final.job_id)
    return [*jobs, final]


def _by_time(grid: Grid) -> list[tuple[int, list[Cell]]]:
    """The cells grouped by their time limit in minutes, longest first."""
    groups: dict[int, list[Cell]] = {}
    for run, models in grid.jobs():
        groups.setdefault(int(60 * job_hours(grid, run, models)), []).append((run, models))
    return sorted(groups.items(), reverse=True)


def array_parallelism(groups: list[tuple[int, list]], limit: int) -> list[tuple[int, list, int]]:
    """How many tasks of each array may run at once, ``limit`` in all: ``(minutes, cells,
    parallel)`` per array.

    Each array gets one slot, then each further slot goes to the array that would finish
    last (⌈cells / slots⌉ × minutes, its tasks run in waves), so the arrays end together
    as nearly as whole slots allow and no array holds more slots than it has cells (the
    last end is the least any sharing of ``limit`` slots gives: the array that ends last
    can only end sooner with more slots, so every greedy step is one an optimum takes). When
    there are more arrays than ``limit``, every cell goes into one array at the longest
    time limit: the limit holds, at the cost of asking short cells for more time.
    """
    if len(groups) > limit:
        cells = [cell for _, group in groups for cell in group]
        return [(max(m for m, _ in groups), cells, min(limit, len(cells)))]
    slots = [1] * len(groups)

    def finish(i: int) -> int:
        return -(-len(groups[i][1]) // slots[i]) * groups[i][0]

    for _ in range(limit - len(groups)):
        open_ = [i for i, (_, cells) in enumerate(groups) if slots[i] < len(cells)]
        if not open_:
            break
        slots[max(open_, key=finish)] += 1
    return [(m, cells, s) for (m, cells), s in zip(groups, slots, strict=True)]


def array_id(job_id: str) -> str:
    """SLURM's id of a whole array from one task's (``123_4`` → ``123``); ``afterok`` on
    it waits for every task. A batch of one is a plain job (``123``)."""
    return job_id.split("_")[0]


def _resources(grid: Grid) -> dict:
    s = grid.slurm
    params = {
        "gpus_per_node": _count(s, "gpus_per_node", 1, least=0),
        "cpus_per_task": _count(s, "cpus_per_task", 8, least=1),
        "mem_gb": _count(s, "mem_gb", 64, least=1),
    }
    for key in ("partition", "account", "qos", "constraint"):
        if key in s:
            params[f"slurm_{key}"] = s[key]
    return params


def _count(slurm: dict, key: str, default: int, least: int) -> int:
    """An integer resource of ``[executor.slurm]``, at least ``least``."""
    value = slurm.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise UserError(f"[executor.slurm] {key} = {value!r}: give a whole number ≥ {least}")
    return value
