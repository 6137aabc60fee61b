"""Correlation of every metric with generalization across models (§3.8, Table 1).

For each metric column: Pearson's r with the target, R² = r² (Table 1's, of the raw
values), the R² of the coordinates the figures plot (``r2_plotted``: of log10 x for the
metrics drawn on a log axis, e.g. CDNV, "average (logarithmic) CDNV" in Figure 1),
``collapse_r``, Pearson's r of the collapse score (larger: more collapse, see
:func:`.directions.collapse_score`) with the target, whose sign says whether collapse
goes with better or worse generalization, and the two-sided permutation-test p-value of
r (``scipy.stats.permutation_test``, ``'pairings'``: the metric values are re-paired
with the targets at random). All metrics
observed on the same models are tested in one call, vectorized over metrics and
resamples, and every call draws the same seeded permutations, so the p-values are
reproducible.

How exact a p-value is:

- With n models and N ≥ n! permutations asked, the test enumerates all n! pairings and
  is exact (``p_se`` = 0); its smallest attainable two-sided p is 2/n! (4 models: 0.083,
  so nothing is significant at 0.05 however strong the correlation).
- Otherwise N random pairings estimate it: p = 2 min(p₋, p₊) with p± = (#{r* ≷ r} + 1) /
  (N + 1), never below 2/(N + 1), with Monte-Carlo standard error
  ``p_se`` = √(p (2 − p) / N) (the binomial error of the one-sided p/2, doubled).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lingcollapse.analysis import DEFAULT_PERMUTATIONS
from lingcollapse.analysis.directions import (
    METRICS,
    collapse_score,
    has_direction,
    is_metric,
    plotted,
)
from lingcollapse.analysis.table import numeric_column
from lingcollapse.errors import UserError

# Resamples per statistic call, sized so one batch stays near 32 MB of float64.
_BATCH_ELEMENTS = 4_000_000


@dataclass
class Correlation:
    pearson_r: float
    r2: float  # of the raw values (Table 1)
    p_value: float
    n: int
    r2_plotted: float = math.nan  # of the coordinates the figures draw
    log_axis: bool = False  # plotted as log10 of the metric
    p_se: float = math.nan  # Monte-Carlo standard error of p_value (0: exact)
    p_min: float = math.nan  # the smallest p the test can give with n models
    collapse_r: float = math.nan  # r of the collapse score (larger: more collapse), if any

    @property
    def exact(self) -> bool:
        return self.p_se == 0.0


@dataclass
class Correlations:
    target: str
    n_models: int
    permutations: int
    seed: int
    metrics: dict[str, Correlation]
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        """The ``analyze --json`` object (NaN written as null), with the
        test's settings and, per metric, the plotted R² and the p-value's precision."""
        return {
            "target": self.target,
            "n_models": self.n_models,
            "permutations": self.permutations,
            "seed": self.seed,
            "metrics": {
                name: {
                    "r2": _finite(c.r2),
                    "pearson_r": _finite(c.pearson_r),
                    "p_value": _finite(c.p_value),
                    "p_se": _finite(c.p_se),
                    "p_min": _finite(c.p_min),
                    "exact": c.exact,
                    "r2_plotted": _finite(c.r2_plotted),
                    "plotted_as": "log10" if c.log_axis else "value",
                    "collapse_r": _finite(c.collapse_r),
                    "n": c.n,
                }
                for name, c in self.metrics.items()
            },
        }


def _finite(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def pearson_rows(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Pearson r of each slice of ``x`` along ``axis`` with the fixed vector ``y``.

    ``x`` is (..., n) after moving ``axis`` last, ``y`` is (n,). NaN where a slice is
    constant (r undefined).
    """
    x = np.moveaxis(x, axis, -1)
    xc = x - x.mean(axis=-1, keepdims=True)  # (..., n)
    yc = y - y.mean()  # (n,)
    num = xc @ yc  # (...)
    den = np.sqrt(np.einsum("...i,...i->...", xc, xc) * (yc @ yc))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = num / den
    return np.where(den > 0, np.clip(r, -1.0, 1.0), np.nan)


def is_exact(n: int, permutations: int) -> bool:
    """Whether ``permutation_test`` enumerates all n! pairings (it does when N ≥ n!)."""
    return n < 21 and math.factorial(n) <= permutations  # 21! > any N asked


def p_precision(p: np.ndarray, n: int, permutations: int) -> tuple[np.ndarray, float]:
    """Monte-Carlo standard error of two-sided p-values, and the smallest attainable p.

    Exact tests (N ≥ n!) have no error and a floor of 2/n!; a random test's p = 2 p₁
    estimates a one-sided p₁ from N Bernoulli draws: se = 2 √(p₁(1 − p₁)/N) =
    √(p (2 − p) / N), floor 2/(N + 1).
    """
    p = np.asarray(p, dtype=float)
    if is_exact(n, permutations):
        return np.zeros_like(p), 2.0 / math.factorial(n)
    return np.sqrt(p * (2.0 - p) / permutations), 2.0 / (permutations + 1)


def permutation_pvalues(
    x: np.ndarray, y: np.ndarray, permutations: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pearson r of each row of ``x`` (M, n) with ``y`` (n,), and two-sided p-values.

    One ``permutation_test`` call for all M rows: each resample re-pairs every row with
    the targets by the same permutation (equivalent to permuting the target), in
    batches of about 32 MB.
    """
    from scipy import stats  # slow to import: not for `lingcollapse --help`

    m, n = x.shape
    batch = max(1, min(permutations, _BATCH_ELEMENTS // max(1, m * n)))
    res = stats.permutation_test(
        (x,),
        lambda xs, axis: pearson_rows(xs, y, axis),
        permutation_type="pairings",
        n_resamples=permutations,
        vectorized=True,
        batch=batch,
        alternative="two-sided",
        axis=-1,
        rng=np.random.default_rng(seed),
    )
    return np.atleast_1d(res.statistic), np.atleast_1d(res.pvalue)


def metric_columns(table: pd.DataFrame, target: str) -> list[str]:
    """Metric columns in the canonical order of §3, then any others as they come."""
    order = {name: i for i, name in enumerate(METRICS)}
    cols = [str(c) for c in table.columns if c != target and is_metric(str(c))]
    return sorted(cols, key=lambda c: order.get(c, len(order)))


def check_permutations(permutations: int) -> None:
    """The permutation test needs at least one permutation."""
    if permutations < 1:
        raise UserError(f"--permutations must be positive, not {permutations}")


def correlate(
    table: pd.DataFrame,
    target: str = "val_loss",
    permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
) -> Correlations:
    """R², Pearson r and permutation p-value of every metric column vs ``target``."""
    if target not in table.columns:
        columns = ", ".join(map(str, table.columns))
        raise UserError(f"target column {target!r} not in the table (columns: {columns})")
    check_permutations(permutations)
    y_all = numeric_column(table, target)
    has_y = np.isfinite(y_all)
    if has_y.sum() < 3:
        raise UserError(
            f"need at least 3 models with a {target} value to correlate, found {int(has_y.sum())}"
        )
    columns = metric_columns(table, target)
    if not columns:
        raise UserError(
            f"the table has no metric column to correlate with {target} (columns: "
            f"{', '.join(map(str, table.columns))}); give tables or runs with the names of "
            "the metrics (nc1_cdnv, nc4_agreement, …), e.g. made by `lingcollapse measure`"
        )
    values = {c: numeric_column(table, c) for c in columns}
    out = Correlations(target, int(has_y.sum()), permutations, seed, {})
    undefined: dict[str, list[str]] = {}
    for mask, group in _groups(values, has_y).items():
        _test_group(out, group, values, y_all, np.array(mask), permutations, seed, undefined)
    out.metrics = {c: out.metrics[c] for c in columns if c in out.metrics}
    for why, names in undefined.items():
        out.notes.append(f"r undefined (NaN), {why}: {', '.join(names)}")
    return out


def _groups(values: dict[str, np.ndarray], has_y: np.ndarray) -> dict[tuple, list[str]]:
    """Metrics grouped by the models on which they (and the target) are observed."""
    groups: dict[tuple, list[str]] = {}
    for name, x in values.items():
        mask = tuple(bool(b) for b in np.isfinite(x) & has_y)
        groups.setdefault(mask, []).append(name)
    return groups


def _test_group(out, names, values, y_all, mask, permutations, seed, undefined) -> None:
    """Test the metrics observed on the same models (``mask``) in one vectorized call."""
    n = int(mask.sum())
    nan = Correlation(math.nan, math.nan, math.nan, n)
    testable = []
    for name in names:
        x = values[name][mask]
        if n < 3:
            why = f"fewer than 3 models with a value ({n})"
        elif np.ptp(x) == 0 or np.ptp(y_all[mask]) == 0:
            why = "constant across the models"
        else:
            testable.append(name)
            continue
        undefined.setdefault(why, []).append(name)
        out.metrics[name] = nan
    if not testable:
        return
    x = np.stack([values[name][mask] for name in testable])  # (M, n)
    y = y_all[mask]
    r, p = permutation_pvalues(x, y, permutations, seed)
    se, floor = p_precision(p, n, permutations)
    for name, ri, pi, sei, row in zip(testable, r, p, se, x, strict=True):
        drawn, log_axis = plotted(name, row)
        oriented = pearson_rows(collapse_score(name, row), y) if has_direction(name) else math.nan
        out.metrics[name] = Correlation(
            float(ri),
            float(ri) ** 2,
            float(pi),
            n,
            r2_plotted=float(pearson_rows(drawn, y)) ** 2 if log_axis else float(ri) ** 2,
            log_axis=log_axis,
            p_se=float(sei),
            p_min=floor,
            collapse_r=float(oriented),
        )
