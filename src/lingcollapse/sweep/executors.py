"""Where sweep jobs run: here, one after another (``local``), or as SLURM job arrays.

A job (a cell of the grid) is one training run with the models it gives (its epoch
models and its last), or one Hugging Face model measured as it is; it runs its stages in
order itself (train → collect → measure, :func:`lingcollapse.sweep.stages.run_job`), so
no dependency between stages of one cell is left to the scheduler, and a cell requeued or
run again resumes where it stopped.

The SLURM executor uses ``submitit`` (``pip install 'lingcollapse[slurm]'``). Each job
has time for its training in the spirit of the paper's Appendix C (up to 8 hours an
epoch on one A100 for the largest models) and a collection per model (Appendix D: up to
6 hours a pass), on ``[executor.slurm]``'s GPUs and memory. A hub model that declares its
config gets what :mod:`lingcollapse.sweep.resources` plans for it instead, sized once
the data is prepared (its class count known): GPUs, ``mem_gb``, a time limit, and
``device_map = "auto"`` for its collection when it spans GPUs; ``gpus_per_node``,
``mem_gb`` and ``collect_hours``, where the grid gives them, are then floors.

Cells are submitted as job arrays (``executor.batch()``), one array per :class:`Slot`
(time limit, GPUs, memory: the tasks of an array share them), because SLURM throttles
only the tasks of an array (``--array=0-N%P``): ``[executor.slurm] max_parallel`` is
shared out between the arrays (:func:`array_parallelism`), so at most that many cells run
at once. One final analyze/report job starts after every task of every array succeeded
(``afterok`` on the arrays' ids).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from lingcollapse.errors import UserError
from lingcollapse.progress import progress
from lingcollapse.sweep import resources, stages
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
    _by_slot(grid, out, base)  # a model too large to plan for: an error before any work
    stages.prepare_data(grid, out)  # once, here, before the jobs need it
    executor = submitit.AutoExecutor(folder=out / "slurm" / "%j", cluster=cluster)
    jobs, arrays = [], []
    for slot, cells, parallel in _arrays(_by_slot(grid, out, base), limit):
        executor.update_parameters(
            **{**base, "gpus_per_node": slot.gpus, "mem_gb": slot.mem_gb},
            name=slot.name(grid, base),
            timeout_min=slot.minutes,
            slurm_array_parallelism=parallel,
        )
        cell_grid = _device_mapped(grid) if slot.device_map else grid
        with executor.batch():  # one sbatch --array=0-(n-1)%parallel
            tasks = [executor.submit(stages.run_job, cell_grid, r, m, out) for r, m in cells]
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


@dataclasses.dataclass(frozen=True, order=True)
class Slot:
    """What SLURM is asked for each task of one array."""

    minutes: int
    gpus: int
    mem_gb: int
    device_map: bool = False  # collect spreads the model over the GPUs

    def name(self, grid: Grid, base: dict) -> str:
        """``lc-GRID-8h``; with resources other than ``[executor.slurm]``'s, also the
        GPUs and memory (``lc-GRID-8h-2gpu-96G``)."""
        name = f"lc-{grid.name}-{self.minutes // 60}h"
        if (self.gpus, self.mem_gb) == (base["gpus_per_node"], base["mem_gb"]):
            return name
        return f"{name}-{self.gpus}gpu-{self.mem_gb}G"


def cell_slot(grid: Grid, run: Run | None, models: list[Model], out: Path, base: dict) -> Slot:
    """The cell's slot: ``[executor.slurm]``'s resources and :func:`job_hours`, or what
    the planner sizes for a hub model that declares its config (the grid's explicit
    ``gpus_per_node``, ``mem_gb`` and ``collect_hours`` as floors)."""
    planned = None if run is not None else resources.plan_model(grid, models[0], out)
    if planned is None:
        return Slot(int(60 * job_hours(grid, run, models)), base["gpus_per_node"], base["mem_gb"])
    given = grid.slurm
    hours = planned.time_limit_hours or float(given.get("collect_hours", 6.0))
    return Slot(
        minutes=int(60 * max(hours, float(given.get("collect_hours", 0)))),
        gpus=max(planned.gpus, given.get("gpus_per_node", 0)),
        mem_gb=max(planned.mem_gb, given.get("mem_gb", 0)),
        device_map=planned.device_map,
    )


def _by_slot(grid: Grid, out: Path, base: dict) -> list[tuple[Slot, list[Cell]]]:
    """The cells grouped by slot, longest time limit first."""
    groups: dict[Slot, list[Cell]] = {}
    for run, models in grid.jobs():
        groups.setdefault(cell_slot(grid, run, models, out, base), []).append((run, models))
    return sorted(groups.items(), key=lambda group: group[0], reverse=True)


def _arrays(groups: list[tuple[Slot, list[Cell]]], limit: int) -> list[tuple[Slot, list, int]]:
    """``(slot, cells, parallel)`` per array (:func:`array_parallelism`); when every cell
    goes into one array, it asks for the most any of them needs."""
    shared = array_parallelism([(slot.minutes, cells) for slot, cells in groups], limit)
    if len(shared) == len(groups):
        return [(slot, c, p) for (slot, _), (_, c, p) in zip(groups, shared, strict=True)]
    slots = [slot for slot, _ in groups]
    ((minutes, cells, parallel),) = shared
    most = Slot(
        minutes,
        max(s.gpus for s in slots),
        max(s.mem_gb for s in slots),
        any(s.device_map for s in slots),
    )
    return [(most, cells, parallel)]


def _device_mapped(grid: Grid) -> Grid:
    """The grid as a cell spanning GPUs runs it: collect with ``device_map = "auto"``
    unless ``[collect]`` places the model itself."""
    if "device_map" in grid.collect:
        return grid
    return dataclasses.replace(grid, collect={**grid.collect, "device_map": "auto"})


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
