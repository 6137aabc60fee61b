"""The printed correlation table: metric, ↑/↓, R², r, p and significance (§3.8)."""

from __future__ import annotations

import math

from lingcollapse.analysis.correlation import Correlations
from lingcollapse.analysis.directions import METRICS, arrow

ALPHA = 0.05


def significant(p: float, alpha: float = ALPHA) -> bool:
    return math.isfinite(p) and p < alpha


def _num(x: float, fmt: str) -> str:
    """Formatted, or "nan" padded to the same width so columns stay aligned."""
    width = int(fmt.lstrip("+").split(".")[0])
    return f"{'nan':>{width}}" if not math.isfinite(x) else format(x, fmt)


def format_p(p: float) -> str:
    """A p-value (or its error) in 7 characters: 4 decimals, or 2 digits below 10⁻³."""
    if not math.isfinite(p):
        return f"{'nan':>7}"
    return f"{p:7.4f}" if p >= 1e-3 or p == 0 else f"{p:7.1e}"


def test_settings(corr: dict) -> str:
    """How the p-values were found, and the smallest one the test can give (the largest
    of the metrics' floors), from the ``analyze --json`` object (correlations.json)."""
    tested = [c for c in corr.get("metrics", {}).values() if c.get("p_min") is not None]
    worst = max(tested, key=lambda c: c["p_min"], default=None)
    if worst is not None and worst.get("exact"):
        return (
            f"exact test over all pairings of {corr.get('n_models')} models: the smallest "
            f"attainable p is {worst['p_min']:.3g}"
            + (f", so no p can be below {ALPHA}" if worst["p_min"] >= ALPHA else "")
        )
    count = corr.get("permutations")
    text = f"{count:,} permutations, seed {corr.get('seed')}" if isinstance(count, int) else ""
    if worst is not None:
        text += ("; " if text else "") + f"the smallest attainable p is {worst['p_min']:.2g}"
    return text


def correlation_table(corr: Correlations) -> str:
    """One line per metric, like the paper's Table 1, with the direction of collapse:
    R² of the raw values (Table 1's), Pearson r, the p-value ± its Monte-Carlo standard
    error, and R² as the figures plot it where that differs (log axes)."""
    names = list(corr.metrics)
    width = max([len(n) for n in names] + [6])
    head = (
        f"{'metric':<{width}}  ↑/↓  {'R²':>9}  {'r':>7}  {'p':>7} {'± se':>7}  p<{ALPHA}  "
        "description"
    )
    lines = [
        f"{corr.target} vs {len(names)} metrics over {corr.n_models} models "
        f"({test_settings(corr.as_json())})",
        head,
        "-" * (len(head) + 30),
    ]
    logged = []
    for name, c in corr.metrics.items():
        sig = "yes" if significant(c.p_value) else "no" if math.isfinite(c.p_value) else "-"
        se = "exact" if c.exact else format_p(c.p_se)
        lines.append(
            f"{name:<{width}}   {arrow(name):<2}  {_num(c.r2, '9.6f')}  "
            f"{_num(c.pearson_r, '+7.3f')}  {format_p(c.p_value)} {se:>7}  {sig:<6}  "
            f"{METRICS.get(name, (0, ''))[1]}"
        )
        if c.log_axis:
            logged.append(f"{name} {c.r2_plotted:.6f}")
    lines.append("-" * (len(head) + 30))
    if logged:
        lines.append("R² of log10 values, as the figures plot them: " + ", ".join(logged))
    lines.append(
        "↓/↑: smaller/larger means more collapse; →0: a signed CoV that collapse drives "
        "towards zero; r > 0 with val_loss means larger values go with worse generalization"
    )
    return "\n".join(lines)
