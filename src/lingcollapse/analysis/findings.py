"""The paper's findings, each tested on the data at hand: does it hold here?

Every verdict is computed from the table, never written in:

- **holds** — the test is significant (p < 0.05) in the direction the paper claims;
- **against** — significant in the opposite direction: the metric moves *against*
  collapse (or against the claim), which the report marks as such;
- **not significant** — testable here, p ≥ 0.05;
- **cannot be tested here** — with the reason: too few models or levels, no β pairs, or
  so few models that no p can reach 0.05 (with n! ≤ the permutations the test is exact
  and its smallest p is 2/n!: 0.083 for 4 models).

A property's *collapse score* s (:func:`.directions.collapse_score`) orients every metric
so that larger s is more collapse: s = −x for ↓ metrics (−log10 x for CDNV, plotted on a
log axis), s = x for ↑, and s = −|x| for the signed CoVs that collapse drives to zero.

The claims (paper sections in brackets):

1. *P improves with width / depth / training* (§4, Appendices E–P): Spearman ρ(s, factor)
   over the architectures (seeds averaged), two-sided permutation test.
2. *P is stronger with β = 0.1* (§5.3): the paired sign-flip test of :mod:`.decay`.
3. *P goes with better generalization* (§4, Figures 1–3): Pearson r(s, target) < 0
   across models, permutation test; R² as in Table 1.
4. *GNC2 tracks generalization better than NC2's equiangularity* (§4.2) and *UNC3
   better than NC3* (§5.2): R² of one against the other over the same models, with a
   paired bootstrap (models resampled) two-sided p of the difference.
5. *Within one architecture, P still goes with generalization* (Table 1, §5.1): claim 3
   within the largest group of seeds.

Every claim about CDNV (k = 2, not scale-invariant) is repeated on ``nc1_cdnv_k0``
(``measure --cdnv-control``) as its control, or says that the control was not measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lingcollapse.analysis import DEFAULT_PERMUTATIONS
from lingcollapse.analysis.correlation import (
    is_exact,
    p_precision,
    pearson_rows,
    permutation_pvalues,
)
from lingcollapse.analysis.directions import collapse_score as score
from lingcollapse.analysis.directions import is_metric, plotted
from lingcollapse.analysis.summary import format_p

ALPHA = 0.05
HOLDS, AGAINST, NOT_SIGNIFICANT, UNTESTABLE = (
    "holds",
    "against",
    "not significant",
    "cannot be tested here",
)
# The properties of the paper's Figures 1–3, in its order; the first present of each
# tuple is tested (the authors' 2024-05 table has only the uncentred GNC2).
PROPERTIES = (
    ("NC1 (CDNV)", ("nc1_cdnv",)),
    ("NC2 equinormness", ("nc2_equinorm_cov",)),
    ("NC2 equiangularity", ("nc2_equiangular_cov",)),
    ("GNC2 uniformity", ("gnc2_uniformity_cov", "gnc2_uniformity_uncentred_cov")),
    ("NC3 self-duality", ("nc3_duality_mean",)),
    ("UNC3 uniform duality", ("unc3_duality_cov",)),
    ("NC4 agreement", ("nc4_agreement",)),
)
CONTROL = {"nc1_cdnv": "nc1_cdnv_k0"}
FACTORS = (("width", "width"), ("depth", "depth"), ("training", "epochs"))
# What an architecture is when seeds are averaged (the columns a table has).
ARCHITECTURE = (
    "family",
    "width",
    "depth",
    "schedule_epochs",
    "epochs",
    "weight_decay",
    "lr",
    "batch_size",
)


@dataclass
class Finding:
    """One claim of the paper and what the data at hand say of it."""

    claim: str
    section: str
    verdict: str
    evidence: str  # the statistic and p behind the verdict, or why it cannot be tested
    metric: str | None = None
    control: str | None = None  # the same test on the scale-invariant CDNV (k = 0)

    def with_claim(self, claim: str) -> Finding:
        return Finding(claim, self.section, self.verdict, self.evidence, self.metric, self.control)


@dataclass
class Findings:
    target: str
    n_models: int
    permutations: int
    items: list[Finding] = field(default_factory=list)


def findings(
    table: pd.DataFrame,
    target: str = "val_loss",
    permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
) -> Findings:
    """Every claim of the module doc that the table's columns allow, tested."""
    out = Findings(target, len(table), permutations)
    tester = _Tester(permutations, seed)
    architectures = _architectures(table)
    properties = _properties(table)
    for label, metric in properties:
        for name, column in FACTORS:
            out.items.append(tester.factor(architectures, label, metric, name, column))
    out.items.extend(_decay_findings(table, properties, permutations, seed))
    for label, metric in properties:
        out.items.append(tester.target(table, label, metric, target, "§4, Figures 1–3"))
    out.items.extend(_comparisons(table, properties, target, seed))
    out.items.extend(_seed_findings(table, properties, target, tester))
    return out


def _properties(table: pd.DataFrame) -> list[tuple[str, str]]:
    found = []
    for label, names in PROPERTIES:
        metric = next((n for n in names if _has(table, n)), None)
        if metric is not None:
            found.append((label, metric))
    return found


def _has(table: pd.DataFrame, column: str) -> bool:
    return column in table.columns and pd.to_numeric(table[column], errors="coerce").notna().any()


def _architectures(table: pd.DataFrame) -> pd.DataFrame:
    """The table with its seeds averaged: one row per architecture and schedule."""
    keys = [k for k in ARCHITECTURE if k in table.columns]
    if not keys or "seed" not in table.columns:
        return table
    values = [c for c in table.columns if c not in (*keys, "model", "run", "seed")]
    numeric = table[values].apply(pd.to_numeric, errors="coerce")
    numeric[keys] = table[keys]
    return numeric.groupby(keys, dropna=False).mean(numeric_only=True).reset_index()


class _Tester:
    def __init__(self, permutations: int, seed: int) -> None:
        self.permutations, self.seed = permutations, seed

    def correlation(self, s: np.ndarray, y: np.ndarray, ranks: bool) -> tuple | str:
        """(r, p, exact) of s against y over their finite pairs, or why not testable."""
        ok = np.isfinite(s) & np.isfinite(y)
        s, y = s[ok], y[ok]
        n = len(s)
        if n < 3:
            return f"{n} model(s) with a value: a correlation needs 3"
        if np.ptp(y) == 0 or np.ptp(s) == 0:
            return "the values do not vary here"
        _, floor = p_precision(np.zeros(1), n, self.permutations)
        if floor >= ALPHA:
            return (
                f"{n} models: the smallest attainable p is {floor:.3g} (exact test), so no "
                f"result can reach {ALPHA}"
            )
        if ranks:
            from scipy.stats import rankdata

            s, y = rankdata(s), rankdata(y)
        r, p = permutation_pvalues(s[None, :], y, self.permutations, self.seed)
        return float(r[0]), float(p[0]), is_exact(n, self.permutations), n

    def factor(self, data, label, metric, name, column) -> Finding:
        claim = f"{label} improves with {name}"
        section = "§4, Appendices E–P"
        if column not in data.columns or pd.to_numeric(data[column], errors="coerce").nunique() < 2:
            why = f"one {name} only" if column in data.columns else f"no {column} column"
            return Finding(claim, section, UNTESTABLE, why, metric)
        y = pd.to_numeric(data[column], errors="coerce").to_numpy(float)
        found = self._verdict(score(metric, data[metric]), y, +1, "Spearman ρ", ranks=True)
        control = self._control(data, metric, y, +1, "Spearman ρ", ranks=True)
        return Finding(claim, section, found[0], found[1], metric, control)

    def target(self, table, label, metric, target, section) -> Finding:
        claim = f"more {label} goes with better generalization (lower {target})"
        if target not in table.columns:
            return Finding(claim, section, UNTESTABLE, f"no {target} column", metric)
        y = pd.to_numeric(table[target], errors="coerce").to_numpy(float)
        found = self._verdict(score(metric, table[metric]), y, -1, "Pearson r", ranks=False)
        control = self._control(table, metric, y, -1, "Pearson r", ranks=False)
        return Finding(claim, section, found[0], found[1], metric, control)

    def _verdict(self, s, y, sign: int, what: str, ranks: bool) -> tuple[str, str]:
        got = self.correlation(np.asarray(s, float), np.asarray(y, float), ranks)
        if isinstance(got, str):
            return UNTESTABLE, got
        r, p, exact, n = got
        text = f"{what} = {r:+.3f} (R² = {r * r:.3f}), p = {_p(p, exact)}, n = {n}"
        return _decide(sign * r, p), text

    def _control(self, data, metric, y, sign, what, ranks) -> str | None:
        control = CONTROL.get(metric)
        if control is None:
            return None
        if not _has(data, control):
            return (
                "control not measured: the CDNV with k = 0 (scale-invariant) needs "
                "`measure --cdnv-control`"
            )
        verdict, text = self._verdict(score(control, data[control]), y, sign, what, ranks)
        return f"k = 0 (scale-invariant): {verdict}; {text}"


def _decide(oriented_r: float, p: float) -> str:
    if p >= ALPHA:
        return NOT_SIGNIFICANT
    return HOLDS if oriented_r > 0 else AGAINST


def _p(p: float, exact: bool) -> str:
    return format_p(p).strip() + (" (exact)" if exact else "")


def _decay_findings(table, properties, permutations, seed) -> list[Finding]:
    from lingcollapse.analysis.decay import compare_decays, decay_levels, decay_pairs

    section = "§5.3"
    levels = decay_levels(table)
    if levels is None or decay_pairs(table) is None:
        why = (
            "one weight decay only"
            if levels is None
            else "no two models differ in weight decay only (same architecture, epochs, seed)"
        )
        return [
            Finding(
                f"{label} is stronger with the larger weight decay",
                section,
                UNTESTABLE,
                why,
                metric,
            )
            for label, metric in properties
        ]
    names = [m for _, m in properties] + [CONTROL[m] for _, m in properties if m in CONTROL]
    columns = [c for c in table.columns if not is_metric(str(c))]  # the pairing keys
    tests = compare_decays(table[[*columns, *[n for n in names if n in table]]], permutations, seed)
    weak, strong = levels
    out = []
    for label, metric in properties:
        claim = f"{label} is stronger with β = {strong:g} than with β = {weak:g}"
        test = tests.get(metric)
        if test is None:
            out.append(
                Finding(claim, section, UNTESTABLE, "fewer than 2 pairs with a value", metric)
            )
            continue
        verdict, text = _decay_text(test)
        control = None
        if metric in CONTROL:
            ctl = tests.get(CONTROL[metric])
            control = (
                f"k = 0 (scale-invariant): {' — '.join(_decay_text(ctl))}"
                if ctl is not None
                else "control not measured: `measure --cdnv-control` gives the k = 0 CDNV"
            )
        out.append(Finding(claim, section, verdict, text, metric, control))
    return out


def _decay_text(test) -> tuple[str, str]:
    won = round(test.share_more_collapsed * test.n_pairs)
    text = (
        f"more collapsed in {won} of {test.n_pairs} pairs, mean gain {test.mean_gain:+.3g}, "
        f"paired p = {_p(test.p_value, test.exact)}"
    )
    return _decide(test.mean_gain, test.p_value), text


def _comparisons(table, properties, target, seed) -> list[Finding]:
    out = []
    pairs = (
        ("GNC2 uniformity", "NC2 equiangularity", "§4.2"),
        ("UNC3 uniform duality", "NC3 self-duality", "§5.2"),
    )
    by_label = {label: m for label, m in properties}
    for better, worse, section in pairs:
        claim = f"{better} tracks generalization better than {worse} (larger R²)"
        a, b = by_label.get(better), by_label.get(worse)
        if a is None or b is None or target not in table.columns:
            missing = worse if a is not None else better
            out.append(Finding(claim, section, UNTESTABLE, f"no {missing} values", None))
            continue
        out.append(_compare_r2(table, claim, section, a, b, target, seed))
    return out


def _compare_r2(table, claim, section, a, b, target, seed, resamples: int = 10_000) -> Finding:
    """R² of a and b with the target on the same models; bootstrap p of the difference."""
    y = pd.to_numeric(table[target], errors="coerce").to_numpy(float)
    xa, xb = (plotted(m, table[m])[0] for m in (a, b))
    ok = np.isfinite(xa) & np.isfinite(xb) & np.isfinite(y)
    n = int(ok.sum())
    if n < 4:
        return Finding(claim, section, UNTESTABLE, f"{n} models with both values: need 4", a)
    xa, xb, y = xa[ok], xb[ok], y[ok]
    r2a, r2b = (float(pearson_rows(x, y)) ** 2 for x in (xa, xb))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n))
    diff = _r2_rows(xa[idx], y[idx]) - _r2_rows(xb[idx], y[idx])
    diff = diff[np.isfinite(diff)]
    share = float((diff > 0).mean()) if diff.size else math.nan
    p = min(1.0, 2 * min(share, 1 - share)) if diff.size else math.nan
    p = max(p, 2.0 / (diff.size + 1)) if diff.size else p
    text = (
        f"R² {r2a:.3f} against {r2b:.3f} over {n} models; bootstrap p = {_p(p, False)} "
        f"({resamples:,} resamples)"
    )
    verdict = UNTESTABLE if not math.isfinite(p) else _decide(r2a - r2b, p)
    return Finding(claim, section, verdict, text, a)


def _r2_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """R² of each row of ``x`` with the same row of ``y`` (bootstrap resamples, (R, n)):
    :func:`.correlation.pearson_rows` takes one ``y`` for every row."""
    xc = x - x.mean(axis=1, keepdims=True)
    yc = y - y.mean(axis=1, keepdims=True)
    num = (xc * yc).sum(1)
    den = (xc * xc).sum(1) * (yc * yc).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num * num / den, np.nan)


def _seed_findings(table, properties, target, tester: _Tester) -> list[Finding]:
    from lingcollapse.analysis.figures import seed_groups

    groups = seed_groups(table) if target in table.columns else []
    if not groups:
        return []
    group = groups[0]
    section = f"Table 1, §5.1 ({len(group)} seeds of one architecture)"
    return [
        tester.target(group, label, metric, target, section).with_claim(
            f"within one architecture, more {label} goes with lower {target}"
        )
        for label, metric in properties
    ]
