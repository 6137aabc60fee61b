"""§5.3, the effect of weight regularization: is collapse stronger with β = 0.1 than with
β = 0.0005, the same model otherwise?

Models are paired when they differ in weight decay only (same family, width, depth,
schedule, epoch measured, seed and, where recorded, learning rate, batch size and data).
For each metric with a direction of collapse (↓, ↑ or →0, :mod:`.directions`), a pair's
*gain* is how much more collapsed the strong-β model is: the difference of their collapse
scores (:func:`.directions.collapse_score`, in the coordinates the figures plot, log10 for
CDNV), i.e. x_weak − x_strong for ↓, x_strong − x_weak for ↑, |x_weak| − |x_strong| for →0.

The test is the paired (sign-flip) permutation test of the mean gain, two-sided
(``scipy.stats.permutation_test``, ``permutation_type='samples'``; exact when 2ⁿ ≤ the
permutations asked), with the share of pairs in which the strong β collapses more.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lingcollapse.analysis import DEFAULT_PERMUTATIONS
from lingcollapse.analysis.directions import collapse_score, has_direction, is_metric

# What must agree for two models to differ in β only (those of them a table has).
PAIR_KEYS = (
    "family",
    "width",
    "depth",
    "schedule_epochs",
    "epochs",
    "seed",
    "lr",
    "batch_size",
    "corpus",
    "data_sha256",
)


@dataclass
class DecayTest:
    """One metric's paired comparison of the strong and the weak weight decay."""

    metric: str
    n_pairs: int
    mean_gain: float  # > 0: the strong β collapses more, on average
    share_more_collapsed: float  # of the pairs, in which the strong β collapses more
    p_value: float
    exact: bool


def decay_levels(df: pd.DataFrame) -> tuple[float, float] | None:
    """The weakest and the strongest weight decay of the table, if there are two."""
    if "weight_decay" not in df.columns:
        return None
    levels = sorted(pd.to_numeric(df["weight_decay"], errors="coerce").dropna().unique())
    return (float(levels[0]), float(levels[-1])) if len(levels) >= 2 else None


def decay_pairs(df: pd.DataFrame) -> pd.DataFrame | None:
    """One row per pair: the keys, then each column as ``NAME_weak`` and ``NAME_strong``.

    None when the table has fewer than two weight decays or no model has a twin.
    """
    levels = decay_levels(df)
    if levels is None:
        return None
    keys = [k for k in PAIR_KEYS if k in df.columns]
    beta = pd.to_numeric(df["weight_decay"], errors="coerce")
    weak, strong = df[beta == levels[0]], df[beta == levels[1]]
    if not keys:
        return None
    pairs = weak.merge(strong, on=keys, suffixes=("_weak", "_strong"))
    return pairs if len(pairs) else None


def gains(pairs: pd.DataFrame, metric: str) -> np.ndarray:
    """Each pair's gain in collapse from the strong β (see the module doc); NaN where a
    model of the pair lacks the value."""
    weak = pd.to_numeric(pairs[f"{metric}_weak"], errors="coerce").to_numpy(float)
    strong = pd.to_numeric(pairs[f"{metric}_strong"], errors="coerce").to_numpy(float)
    scores = collapse_score(metric, np.concatenate([weak, strong]))  # one axis for both
    return scores[len(weak) :] - scores[: len(weak)]


def compare_decays(
    df: pd.DataFrame, permutations: int = DEFAULT_PERMUTATIONS, seed: int = 0
) -> dict[str, DecayTest]:
    """The paired test of every metric with a direction of collapse (none without
    pairs); the target columns (val_*) are compared too, as ↓/↑ metrics."""
    pairs = decay_pairs(df)
    if pairs is None:
        return {}
    out = {}
    for metric in _directed(df):
        if f"{metric}_weak" not in pairs:
            continue
        gain = gains(pairs, metric)
        gain = gain[np.isfinite(gain)]
        if len(gain) < 2:
            continue
        p, exact = _sign_flip_p(gain, permutations, seed)
        out[metric] = DecayTest(
            metric,
            len(gain),
            float(gain.mean()),
            float((gain > 0).mean()),
            p,
            exact,
        )
    return out


def _directed(df: pd.DataFrame) -> list[str]:
    """Metric columns whose direction of collapse is known, in the table's order."""
    return [str(c) for c in df.columns if is_metric(str(c)) and has_direction(str(c))]


def _sign_flip_p(gain: np.ndarray, permutations: int, seed: int) -> tuple[float, bool]:
    """Two-sided p of the mean gain under random signs, and whether it was exact."""
    from scipy import stats  # slow to import

    if np.ptp(gain) == 0 and gain[0] == 0:
        return 1.0, True
    res = stats.permutation_test(
        (gain,),
        lambda x, axis: np.mean(x, axis=axis),
        permutation_type="samples",
        n_resamples=permutations,
        vectorized=True,
        alternative="two-sided",
        rng=np.random.default_rng(seed),
    )
    return float(res.pvalue), len(gain) < 63 and 2 ** len(gain) <= permutations
