"""Correlation of every metric with generalization across models (§3.8, Table 1).

For each metric column: Pearson's r with the target, R² = r², and the two-sided
permutation-test p-value of r (``scipy.stats.permutation_test``, ``'pairings'``: the
metric values are re-paired with the targets at random). All metrics observed on the
same models are tested in one call, vectorized over metrics and resamples, and every
call draws the same seeded permutations, so the p-values are reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from lingcollapse.analysis.directions import METRICS, is_metric
from lingcollapse.analysis.table import numeric_column
from lingcollapse.errors import UserError

DEFAULT_PERMUTATIONS = 10_000
# Resamples per statistic call, sized so one batch stays near 32 MB of float64.
_BATCH_ELEMENTS = 4_000_000


@dataclass
class Correlation:
    pearson_r: float
    r2: float
    p_value: float
    n: int


@dataclass
class Correlations:
    target: str
    n_models: int
    permutations: int
    seed: int
    metrics: dict[str, Correlation]
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        """The ``analyze --json`` object of DESIGN §5 (NaN written as null)."""
        return {
            "target": self.target,
            "n_models": self.n_models,
            "metrics": {
                name: {
                    "r2": _finite(c.r2),
                    "pearson_r": _finite(c.pearson_r),
                    "p_value": _finite(c.p_value),
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


def permutation_pvalues(
    x: np.ndarray, y: np.ndarray, permutations: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pearson r of each row of ``x`` (M, n) with ``y`` (n,), and two-sided p-values.

    One ``permutation_test`` call for all M rows: each resample re-pairs every row with
    the targets by the same permutation (equivalent to permuting the target).
    """
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
            "DESIGN §3 (nc1_cdnv, nc4_agreement, …), e.g. made by `lingcollapse measure`"
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
    r, p = permutation_pvalues(x, y_all[mask], permutations, seed)
    for name, ri, pi in zip(testable, r, p, strict=True):
        out.metrics[name] = Correlation(float(ri), float(ri) ** 2, float(pi), n)
