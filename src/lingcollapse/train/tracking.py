"""What training reports and where: ``--report-to tensorboard,wandb,mlflow``.

Every log row of ``log.jsonl`` (a logging step's training values, an evaluation) goes to
the chosen backends too, as scalars at the row's step, named the way the Trainer's
integrations name them: ``train/loss``, ``train/learning_rate``, ``train/grad_norm``,
``train/tokens_per_s``, ``train/epoch`` (fractional), ``eval/loss``, ``eval/acc``,
``eval/ppl``; a sweep adds the NC metrics measured after an epoch as ``nc/<metric>``
(:func:`report_measured`). Each backend is one :class:`Reporter` (log the config once,
scalars at a step, finish):

- ``tensorboard``: ``torch.utils.tensorboard.SummaryWriter`` into ``RUN/tb/``
  (``tensorboard --logdir RUN/tb``); a resumed run purges the events past its
  checkpoint, as ``log.jsonl`` drops its rows;
- ``wandb``: one W&B run per training run (dir ``RUN``), its id derived from the run's
  name and path and kept in ``RUN/tracking.json``, so a resumed run continues its
  curves (``resume="allow"``); every scalar is plotted against ``train/global_step``,
  so values sent after a resume or a sweep's later measurement are not dropped;
- ``mlflow``: an MLflow run in ``$MLFLOW_TRACKING_URI``, else in ``RUN/mlflow.db``
  (MLflow 3 refuses a plain ``mlruns/`` file store); experiment
  ``$MLFLOW_EXPERIMENT_NAME``, else ``lingcollapse``; its run id is kept in
  ``RUN/tracking.json`` for resuming.

Reporting is not part of a run's recipe: ``--report-to`` may change between a run and
its resumption. The packages are optional extras, imported only when asked for.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import logging
import math
import os
import re
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from lingcollapse.errors import UserError, did_you_mean
from lingcollapse.io import read_json, write_json

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

BACKENDS = ("tensorboard", "wandb", "mlflow")
# The module each backend imports and the package that provides it.
_MODULES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}
# log.jsonl's names → the Trainer integrations' (the rest keep theirs under train/).
_RENAMED = {"lr": "learning_rate"}
_NOT_SCALARS = {"step", "time", "final"}
STEP_METRIC = "train/global_step"


def parse_report_to(value: str | list[str] | None) -> list[str]:
    """``--report-to``: ``none``, ``all`` (every installed backend), or backends,
    comma-separated or as a list (a repeated flag); in the order given, once each."""
    parts = [value] if value is None or isinstance(value, str) else list(value)
    names: list[str] = []
    for part in parts:
        if part is None:
            continue
        if not isinstance(part, str):
            raise UserError(f"--report-to takes backend names, not {part!r}")
        names += [n.strip().lower() for n in part.split(",") if n.strip()]
    if "none" in names:
        if len(set(names)) > 1:
            raise UserError("--report-to none reports nowhere: give it alone")
        return []
    if "all" in names:
        return [b for b in BACKENDS if installed(b)]
    for name in names:
        if name not in BACKENDS:
            raise UserError(
                f"--report-to: unknown backend {name!r}{did_you_mean(name, BACKENDS)} "
                f"(known: none, {', '.join(BACKENDS)}, all)"
            )
        if not installed(name):
            raise UserError(missing(name))
    return list(dict.fromkeys(names))


def installed(backend: str) -> bool:
    """Whether the backend's package can be imported (looked up, not imported)."""
    return importlib.util.find_spec(_MODULES[backend]) is not None


def missing(backend: str) -> str:
    return (
        f"--report-to {backend} needs the {_MODULES[backend]} package: "
        f"pip install 'lingcollapse[{backend}]'"
    )


def _import(backend: str, module: str | None = None):
    try:
        return importlib.import_module(module or _MODULES[backend])
    except ImportError:
        raise UserError(missing(backend)) from None


def scalars(row: dict, prefix: str | None = None) -> dict[str, float]:
    """A log row's numbers under the backends' names: ``val_*`` → ``eval/*``, the rest
    → ``train/*`` (or all under ``prefix/``); steps, times, flags and text left out."""
    found = {}
    for key, value in row.items():
        if key in _NOT_SCALARS or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if not math.isfinite(value):
            continue
        if prefix is not None:
            found[f"{prefix}/{key}"] = float(value)
        elif key.startswith("val_"):
            found[f"eval/{key.removeprefix('val_')}"] = float(value)
        else:
            found[f"train/{_RENAMED.get(key, key)}"] = float(value)
    return found


class Reporter(Protocol):
    """One backend: the run's config once, scalars at steps, then finish."""

    def config(self, values: dict) -> None: ...

    def log(self, values: dict[str, float], step: int) -> None: ...

    def finish(self, failed: bool = False) -> None: ...


class Reporters:
    """The backends of one run as one :class:`Reporter` (none: every call does nothing).

    ``resume_step``: the step the run resumed from; what a backend holds past it was
    logged by the interrupted run and is written again."""

    def __init__(self, backends: list[str], run: Path, name: str, resume_step: int = 0):
        self.reporters: list[Reporter] = []
        makers = {"tensorboard": _TensorBoard, "wandb": _WandB, "mlflow": _MLflow}
        try:
            for backend in backends:
                self.reporters.append(makers[backend](run, name, resume_step))
        except BaseException:
            self.finish(failed=True)
            raise

    def config(self, values: dict) -> None:
        for reporter in self.reporters:
            reporter.config(values)

    def log(self, values: dict[str, float], step: int) -> None:
        if values:
            for reporter in self.reporters:
                reporter.log(values, step)

    def finish(self, failed: bool = False) -> None:
        while self.reporters:
            self.reporters.pop().finish(failed)


def report_measured(backends: list[str], run: Path, name: str, epoch: int, metrics: dict) -> None:
    """The NC metrics of a run's model after ``epoch`` (its ``metrics.json``), as
    ``nc/<metric>`` at the training step that ends that epoch (``RUN/config.json``'s
    ``steps_per_epoch``): the same curves' x axis as the training's."""
    step = epoch * steps_per_epoch(run)
    values = scalars({k: v for k, v in metrics.items() if k not in SETTINGS}, prefix="nc")
    reporters = Reporters(backends, run, name)
    try:
        reporters.log({**values, "nc/epoch": float(epoch)}, step)
    finally:
        reporters.finish()


# metrics.json's record of which model, data and conventions it measured: settings,
# constant along a run's curves, not measurements.
SETTINGS = {"width", "depth", "n_params", "epochs", "schedule_epochs", "checkpoint", "seed"}
SETTINGS |= {"weight_decay", "lr", "vocab_size", "n_sequences", "seq_len", "dim"}
SETTINGS |= {"cdnv_power", "min_count"}


def steps_per_epoch(run: Path) -> int:
    """Optimizer steps per epoch of a trained run, from its ``config.json``."""
    fix = f"{run} is not a finished training run: train it first"
    config = read_json(run / "config.json", fix)
    value = config.get("steps_per_epoch") if isinstance(config, dict) else None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    try:  # a run made before the field: its data's train split and batch size
        import numpy as np

        chunks = np.load(Path(config["data"]) / "train.npy", mmap_mode="r").shape[0]
        return math.ceil(chunks / int(config["batch_size"]))
    except (OSError, KeyError, TypeError, ValueError):
        raise UserError(f"{run}/config.json has no steps_per_epoch: {fix}") from None


class Meter:
    """The values a log row reports of the steps since the row before: the mean of the
    per-step losses (summed on the device: no sync per step), the training throughput
    (evaluation and checkpoints left out) and the last step's gradient norm.

    The loss window survives a resume (:meth:`state` goes into the checkpoint), so a
    resumed run logs the values an uninterrupted one does."""

    def __init__(self, device: torch.device, state: dict | None = None):
        import torch

        state = state or {}
        self.loss = torch.tensor(float(state.get("loss", 0.0)), dtype=torch.float64, device=device)
        self.steps = int(state.get("steps", 0))
        self.tokens = 0  # since the window began, or since the resume
        self.started = time.perf_counter()
        self.paused_s = 0.0

    def add(self, mean_loss: torch.Tensor, tokens: int) -> None:
        """One step: this rank's share of the batch's mean loss (summed over the ranks
        it is the batch's), and the tokens of the whole batch."""
        self.loss += mean_loss.detach()
        self.steps += 1
        self.tokens += tokens

    @contextmanager
    def paused(self):
        """Time spent here (evaluation, checkpoints) is not training time."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.paused_s += time.perf_counter() - start

    def read(self, dist) -> dict:
        """``loss`` (mean over the window's steps, all ranks) and ``tokens_per_s``; starts
        the next window. Every rank calls it together."""
        loss = self._global_loss(dist)
        seconds = time.perf_counter() - self.started - self.paused_s  # after the sync
        row = {"loss": loss / max(self.steps, 1)}
        if seconds > 0 and self.tokens:
            row["tokens_per_s"] = self.tokens / seconds
        self.loss.zero_()
        self.steps = self.tokens = 0
        self.started, self.paused_s = time.perf_counter(), 0.0
        return row

    def state(self, dist) -> dict:
        """The open window, for a checkpoint (every rank calls it together). Under DDP
        the ranks' sums are gathered into rank 0's, so rank 0's state is the whole."""
        loss = self._global_loss(dist)
        self.loss.fill_(loss if dist.rank == 0 else 0.0)
        return {"loss": loss, "steps": self.steps}

    def _global_loss(self, dist) -> float:
        total = self.loss
        if dist.world > 1:
            import torch.distributed

            total = total.clone()
            torch.distributed.all_reduce(total)
        return float(total)


# ---------------------------------------------------------------- the backends


def _ids_path(run: Path) -> Path:
    return run / "tracking.json"


def _ids(run: Path) -> dict:
    """``RUN/tracking.json``: the backends' ids of this run (to continue it)."""
    path = _ids_path(run)
    if not path.is_file():
        return {}
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        log.warning("warning: %s is unreadable; starting new tracking runs", path)
        return {}
    return found if isinstance(found, dict) else {}


def _save_id(run: Path, backend: str, value: dict) -> None:
    run.mkdir(parents=True, exist_ok=True)
    write_json(_ids_path(run), {**_ids(run), backend: value})


def run_id(run: Path, name: str) -> str:
    """A W&B run id for a run dir: its name (W&B's characters only) and a hash of its
    absolute path, so two runs of one name in two places do not mix."""
    digest = hashlib.sha256(str(run.resolve()).encode()).hexdigest()[:8]
    return f"{re.sub(r'[^A-Za-z0-9._-]+', '_', name)[:64]}-{digest}"


class _TensorBoard:
    def __init__(self, run: Path, name: str, resume_step: int):
        _import("tensorboard")
        writer = _import("tensorboard", "torch.utils.tensorboard").SummaryWriter
        # events at or past purge_step in earlier files are hidden: the resumed run
        # writes the steps after its checkpoint again
        purge = resume_step + 1 if resume_step else None
        self.writer = writer(log_dir=str(run / "tb"), purge_step=purge)

    def config(self, values: dict) -> None:
        text = json.dumps(values, indent=2, default=str)
        self.writer.add_text("config", f"```json\n{text}\n```", 0)

    def log(self, values: dict[str, float], step: int) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()  # a killed run keeps its curves up to here

    def finish(self, failed: bool = False) -> None:
        self.writer.close()


class _WandB:
    def __init__(self, run: Path, name: str, resume_step: int):
        wandb = _import("wandb")
        ids = _ids(run).get("wandb", {})
        wid = ids.get("id") if isinstance(ids, dict) else None
        if not isinstance(wid, str):
            wid = run_id(run, name)
            _save_id(run, "wandb", {"id": wid})
        self.run = wandb.init(
            dir=str(run),
            id=wid,
            name=name,
            project=os.environ.get("WANDB_PROJECT", "lingcollapse"),
            resume="allow",
        )
        # a custom x axis: W&B drops values logged at a step below its last one
        self.run.define_metric(STEP_METRIC)
        self.run.define_metric("*", step_metric=STEP_METRIC, step_sync=True)

    def config(self, values: dict) -> None:
        self.run.config.update(values, allow_val_change=True)

    def log(self, values: dict[str, float], step: int) -> None:
        self.run.log({**values, STEP_METRIC: step})

    def finish(self, failed: bool = False) -> None:
        self.run.finish(exit_code=1 if failed else 0)


class _MLflow:
    def __init__(self, run: Path, name: str, resume_step: int):
        mlflow = _import("mlflow")
        env = os.environ.get("MLFLOW_TRACKING_URI")
        uri = env or f"sqlite:///{(run / 'mlflow.db').resolve()}"
        run.mkdir(parents=True, exist_ok=True)
        self.client = mlflow.MlflowClient(tracking_uri=uri)
        self.run_id = self._continued(run, uri) or self._new(run, name, uri, local=not env)

    def _continued(self, run: Path, uri: str) -> str | None:
        """The MLflow run this run made before, in the same store, if it is still there."""
        saved = _ids(run).get("mlflow")
        if not isinstance(saved, dict):
            return None
        if saved.get("tracking_uri") != uri or not isinstance(saved.get("run_id"), str):
            return None
        from mlflow.exceptions import MlflowException

        try:
            self.client.update_run(saved["run_id"], status="RUNNING")
        except MlflowException:  # deleted since
            return None
        return saved["run_id"]

    def _new(self, run: Path, name: str, uri: str, local: bool) -> str:
        experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME", "lingcollapse")
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            where = (run / "mlartifacts").resolve().as_uri() if local else None
            exp_id = self.client.create_experiment(experiment, artifact_location=where)
        else:
            exp_id = found.experiment_id
        run_id = self.client.create_run(exp_id, run_name=name).info.run_id
        _save_id(run, "mlflow", {"tracking_uri": uri, "run_id": run_id})
        return run_id

    def config(self, values: dict) -> None:
        from mlflow.entities import Param
        from mlflow.exceptions import MlflowException

        params = [Param(k, str(v)[:6000]) for k, v in values.items()]
        try:
            self.client.log_batch(self.run_id, params=params)
        except MlflowException as err:  # a continued run's params are immutable
            log.warning("warning: MLflow kept the run's first params: %s", err)

    def log(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, [Metric(k, v, now, step) for k, v in values.items()])

    def finish(self, failed: bool = False) -> None:
        self.client.set_terminated(self.run_id, "FAILED" if failed else "FINISHED")
