"""What the interactive report embeds besides the results table.

For each model whose run dir is found: its most frequent classes from
``classes.parquet`` with, for each, its nearest and most interfering classes among
those embedded (from the class means of ``stats/train.safetensors``), and the paper's
Tables 4–5 views (top and bottom tokens of each column, over all classes, from
:mod:`.inspect`), and a histogram of each per-class column over all its classes. Runs
measured layer-wise (``classes.layerNN.parquet``) get the same for each inner layer,
from that layer's table and ``stats/train.layerNN.safetensors``. For each run: its
training and evaluation loss from ``log.jsonl``.

Neighbours are found in row blocks of the embedded means: memory is O(block · E) for
E embedded classes (E ≤ ``max_tokens``), never E × E at once, and float64 throughout
(the means are stored in float64; a distance between close means loses digits in float32).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lingcollapse.analysis import inspect
from lingcollapse.errors import UserError, first_line

MAX_TOKENS = 2000  # classes embedded per model (the most frequent)
NEIGHBOURS = 10  # nearest and most interfering classes shown per embedded class
EXTREMES = 10  # rows of each Tables 4–5 view
HIST_BINS = 40  # bins of each per-class histogram
# The per-class columns the explorer draws histograms of (those a table has): every
# value column of classes.parquet but the validation count.
HIST_COLUMNS = tuple(c for c in inspect.COLUMNS if c not in ("token_id", "token", "val_count"))
CURVE_POINTS = 400  # training-loss points kept per run (evenly spaced, last kept)
_BLOCK = 512  # rows of the distance block: 512 × E float64
_EPOCH_DIR = re.compile(r"epoch-\d+")
_LAYER_TABLE = re.compile(r"classes\.layer(\d+)\.parquet")


@dataclass
class TokenView:
    """One model's embedded classes, their neighbours and the Tables 4–5 views."""

    model: str
    run: str  # the run dir, as the page names it
    total: int  # classes in classes.parquet
    rows: pd.DataFrame  # embedded classes, most frequent first
    nearest: np.ndarray | None = None  # (E, k) row indices into ``rows``, −1 = none
    nearest_distance: np.ndarray | None = None  # (E, k) ‖μ_c − μ_c'‖
    interfering: np.ndarray | None = None  # (E, k) row indices into ``rows``
    interfering_cos: np.ndarray | None = None  # (E, k) cos of centred means (Eq. 6)
    extremes: dict[str, dict[str, pd.DataFrame]] = field(default_factory=dict)
    average: pd.Series | None = None
    note: str = ""  # why neighbours are missing, if they are
    layer: int | None = None  # an inner layer's index; None: the last layer (classes.parquet)
    histograms: dict[str, dict] = field(default_factory=dict)  # :func:`histograms`


def model_runs(root: Path, models: list[str]) -> dict[str, Path]:
    """The run dir (holding ``metrics.json``) of each model of the results table, found
    below ``root`` and named the way :func:`.table.gather` names them (so two runs of one
    name told apart by a setting match their rows). Models without a run dir are left out."""
    from lingcollapse.analysis.table import gather

    runs = sorted(p.parent for p in Path(root).rglob("metrics.json"))
    if not runs:
        return {}
    wanted = set(models)
    try:
        names = gather(runs).table["model"].astype(str).tolist()
    except UserError:  # a broken run dir: match by the plain names
        names = []
    if len(names) != len(runs):  # duplicate rows dropped: names no longer line up
        names = [_plain_name(run) for run in runs]
    found: dict[str, Path] = {}
    for name, run in zip(names, runs, strict=True):
        if name in wanted and name not in found:
            found[name] = run
    return found


def _plain_name(run: Path) -> str:
    try:
        data = json.loads((run / "metrics.json").read_text())
    except (OSError, ValueError):
        return run.name
    return str(data.get("model") or run.name) if isinstance(data, dict) else run.name


def inner_layers(run: Path) -> list[int]:
    """The inner layers a run was measured at (its ``classes.layerNN.parquet``), in order."""
    found = (_LAYER_TABLE.fullmatch(p.name) for p in Path(run).glob("classes.layer*.parquet"))
    return sorted(int(m.group(1)) for m in found if m)


def _suffix(layer: int | None) -> str:
    return "" if layer is None else f".layer{layer:02d}"


def layer_classes(run: Path, layer: int | None = None) -> pd.DataFrame:
    """The per-class table of one layer (None: the last, ``classes.parquet``), checked as
    :func:`.inspect.load_classes` checks it, with Table 4's scaled norm."""
    if layer is None:
        classes = inspect.load_classes(run)
    else:
        path = Path(run) / f"classes{_suffix(layer)}.parquet"
        try:
            classes = pd.read_parquet(path)
        except Exception as err:  # pyarrow raises several types for a bad file
            raise UserError(
                f"cannot read {path} ({first_line(err)}): run `lingcollapse measure` on "
                "this layer's stats again"
            ) from None
        if "token_id" not in classes.columns:
            raise UserError(f"{path} has no token_id column; is it a classes table from measure?")
        if "token" not in classes.columns:
            classes["token"] = None
        classes = classes.reset_index(drop=True)
    return inspect.with_scaled_norm(classes, run)


def histograms(classes: pd.DataFrame, bins: int = HIST_BINS) -> dict[str, dict]:
    """Per column of :data:`HIST_COLUMNS` the table has: ``numpy.histogram`` of its
    values over all classes (``edges``, ``counts``), and, where at least two distinct
    values are positive, of the positive values over log-spaced edges (``log_edges``,
    ``log_counts``, ``nonpositive`` = classes left out of it); ``missing``: NaN values."""
    out = {}
    for column in HIST_COLUMNS:
        if column not in classes.columns or not pd.api.types.is_numeric_dtype(classes[column]):
            continue
        values = classes[column].to_numpy(np.float64)
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            continue
        counts, edges = np.histogram(finite, bins=bins)
        hist = {"edges": edges, "counts": counts, "missing": int(values.size - finite.size)}
        positive = finite[finite > 0]
        if positive.size and positive.max() > positive.min():
            log_edges = np.geomspace(positive.min(), positive.max(), bins + 1)
            hist["log_counts"], hist["log_edges"] = np.histogram(positive, bins=log_edges)
            hist["nonpositive"] = int(finite.size - positive.size)
        out[column] = hist
    return out


def token_view(
    model: str,
    run: Path,
    max_tokens: int = MAX_TOKENS,
    k: int = NEIGHBOURS,
    root: Path | None = None,
    layer: int | None = None,
) -> TokenView | None:
    """The explorer's data for one model at one layer (None: the last); None when its
    run has no classes table of that layer."""
    if not (Path(run) / f"classes{_suffix(layer)}.parquet").is_file():
        return None
    classes = layer_classes(run, layer)
    by_count = "count" in classes.columns
    order, ascending = (["count", "token_id"], [False, True]) if by_count else (["token_id"], True)
    ranked = classes.sort_values(order, ascending=ascending, kind="stable")
    rows = ranked.head(max_tokens).reset_index(drop=True)
    name = str(Path(run).relative_to(root)) if root and Path(run).is_relative_to(root) else str(run)
    view = TokenView(model, name, len(classes), rows, layer=layer)
    _add_neighbours(view, Path(run), k)
    view.extremes = table_views(classes)
    view.average = inspect.average_row(classes)
    view.histograms = histograms(classes)
    return view


def table_views(classes: pd.DataFrame, k: int = EXTREMES) -> dict[str, dict[str, pd.DataFrame]]:
    """The paper's Tables 4–5 views: per numeric column, its k largest and k smallest
    classes over all classes (:func:`.inspect.extremes`, as ``inspect --top/--bottom``)."""
    views = {}
    for column in classes.columns:
        if column == "token_id" or not pd.api.types.is_numeric_dtype(classes[column]):
            continue
        if classes[column].notna().any():
            views[column] = {
                "top": inspect.extremes(classes, column, k, largest=True),
                "bottom": inspect.extremes(classes, column, k, largest=False),
            }
    return views


def _add_neighbours(view: TokenView, run: Path, k: int) -> None:
    stats = f"stats/train{_suffix(view.layer)}.safetensors"
    try:
        counts, means = inspect.load_means(run / stats)
    except FileNotFoundError:
        view.note = f"no {stats} in the run dir: neighbours not shown"
        return
    except UserError as err:
        view.note = f"neighbours not shown: {err}"
        return
    ids = view.rows["token_id"].to_numpy(np.int64)
    if ids.size == 0 or ids.max() >= len(counts) or ids.min() < 0:
        view.note = "the stats file does not hold these token ids: neighbours not shown"
        return
    min_count = max(1, inspect.measure_setting(run).get("min_count", 1))
    kept = counts >= min_count
    centre = means[kept].mean(axis=0)  # (d,) Eq. 2: unweighted mean of the class means
    mu = np.asarray(means[ids], dtype=np.float64)  # (E, d)
    near, far = nearest_and_interfering(mu, centre, k)
    view.nearest, view.nearest_distance = near
    view.interfering, view.interfering_cos = far


def nearest_and_interfering(
    mu: np.ndarray, centre: np.ndarray, k: int
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """For each row c of ``mu`` (E, d): the k other rows with the smallest ‖μ_c − μ_c'‖,
    and the k with the largest cos(μ_c − centre, μ_c' − centre) (Eq. 6's interference),
    each as (indices, values), padded with −1 / NaN when E ≤ k."""
    mu = np.asarray(mu, dtype=np.float64)
    e = mu.shape[0]
    k = max(0, min(k, e - 1))
    sq = np.einsum("ij,ij->i", mu, mu)  # (E,)
    z = mu - centre  # (E, d)
    norms = np.linalg.norm(z, axis=1)  # (E,)
    unit = np.divide(z, norms[:, None], out=np.zeros_like(z), where=norms[:, None] > 0)
    near_i = np.full((e, k), -1, dtype=np.int64)
    near_v = np.full((e, k), np.nan)
    far_i, far_v = near_i.copy(), near_v.copy()
    for lo in range(0, e, _BLOCK):
        hi = min(e, lo + _BLOCK)
        rows = np.arange(lo, hi)
        # ‖a − b‖² = ‖a‖² + ‖b‖² − 2⟨a, b⟩, clipped at 0 against rounding
        d2 = np.maximum(sq[lo:hi, None] + sq[None, :] - 2.0 * (mu[lo:hi] @ mu.T), 0.0)  # (B, E)
        d2[rows - lo, rows] = np.inf  # not one's own neighbour
        near_i[lo:hi], near_v[lo:hi] = _top(d2, k, smallest=True)
        near_v[lo:hi] = np.sqrt(near_v[lo:hi])
        cos = unit[lo:hi] @ unit.T  # (B, E)
        cos[rows - lo, rows] = -np.inf
        cos[norms[lo:hi] == 0] = np.nan  # a mean at the centre has no direction
        cos[:, norms == 0] = -np.inf
        far_i[lo:hi], far_v[lo:hi] = _top(cos, k, smallest=False)
    return (near_i, near_v), (far_i, far_v)


def _top(block: np.ndarray, k: int, smallest: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k best columns in order (ties by column index), NaN rows as −1."""
    if k == 0:
        return np.empty((len(block), 0), np.int64), np.empty((len(block), 0))
    key = block if smallest else -block
    key = np.where(np.isnan(key), np.inf, key)
    part = np.argpartition(key, k - 1, axis=1)[:, :k]  # (B, k) unordered
    vals = np.take_along_axis(key, part, axis=1)
    order = np.lexsort((part, vals), axis=1)
    idx = np.take_along_axis(part, order, axis=1)
    out = np.take_along_axis(block, idx, axis=1)
    bad = ~np.isfinite(out)
    return np.where(bad, -1, idx), np.where(bad, np.nan, out)


@dataclass
class Curve:
    """One run's losses from ``log.jsonl``: (step, epoch, value) rows."""

    run: str
    models: list[str]
    train: list[tuple[float, float, float]]
    evaluation: list[tuple[float, float, float]]


_TRAIN_KEYS = ("loss", "train_loss")
_EVAL_KEYS = ("val_loss", "eval_loss")


def training_curves(root: Path, runs: dict[str, Path]) -> list[Curve]:
    """Every ``log.jsonl`` below ``root``, one curve per training run; epoch models
    (``RUN/epoch-E``) share their run's log. Rows are read by key and odd ones skipped,
    so older and newer log formats both draw."""
    models_of: dict[Path, list[str]] = {}
    for model, run in runs.items():
        owner = run.parent if _EPOCH_DIR.fullmatch(run.name) else run
        models_of.setdefault(owner.resolve(), []).append(model)
    curves = []
    for log in sorted(Path(root).rglob("log.jsonl")):
        train, evaluation = read_log(log)
        if not train and not evaluation:
            continue
        name = str(log.parent.relative_to(root)) if log.parent != Path(root) else log.parent.name
        models = models_of.get(log.parent.resolve(), [])
        curves.append(Curve(name, models, _thin(train, CURVE_POINTS), evaluation))
    return curves


def read_log(path: Path) -> tuple[list[tuple], list[tuple]]:
    """(train rows, evaluation rows) of a training log, each (step, epoch, loss).

    The ``final`` row a finished run appends repeats its last evaluation at the last
    step; it is skipped, or it would be drawn twice.

    The epoch is fractional (epochs trained at that step). Logs that record the epoch
    index of training rows (0, 0, …) and the epochs completed at evaluation rows get it
    from the steps per epoch an evaluation row implies; without one it is NaN."""
    train, evaluation = [], []
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return [], []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line cut off by a killed run
        if not isinstance(row, dict) or not _number(row.get("step")) or "final" in row:
            continue  # the final row repeats the last evaluation at the last step
        step, epoch = float(row["step"]), row.get("epoch")
        epoch = float(epoch) if _number(epoch) else math.nan
        for keys, out in ((_TRAIN_KEYS, train), (_EVAL_KEYS, evaluation)):
            value = next((row[k] for k in keys if _number(row.get(k))), None)
            if value is not None:
                out.append((step, epoch, float(value)))
    _fractional_epochs(train, evaluation)
    return train, evaluation


def _fractional_epochs(train: list, evaluation: list) -> None:
    """Rewrite integral training epochs as step / steps-per-epoch (in place)."""
    if any(not float(e).is_integer() for _, e, _ in train if e == e):
        return  # already fractional
    per_epoch = next((s / e for s, e, _ in evaluation if e == e and e > 0 and s > 0), None)
    for rows in (train, evaluation):
        for i, (step, _, value) in enumerate(rows):
            rows[i] = (step, step / per_epoch if per_epoch else math.nan, value)


def _number(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _thin(rows: list, limit: int) -> list:
    if len(rows) <= limit:
        return rows
    keep = np.unique(np.linspace(0, len(rows) - 1, limit).round().astype(int))
    return [rows[i] for i in keep]
