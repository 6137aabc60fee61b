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


def correlation_table(corr: Correlations) -> str:
    """One line per metric, like the paper's Table 1, with the direction of collapse."""
    names = list(corr.metrics)
    width = max([len(n) for n in names] + [6])
    head = f"{'metric':<{width}}  ↑/↓  {'R²':>9}  {'r':>7}  {'p':>7}  p<{ALPHA}  description"
    lines = [
        f"{corr.target} vs {len(names)} metrics over {corr.n_models} models "
        f"({corr.permutations:,} permutations, seed {corr.seed})",
        head,
        "-" * (len(head) + 30),
    ]
    for name, c in corr.metrics.items():
        sig = "yes" if significant(c.p_value) else "no" if math.isfinite(c.p_value) else "-"
        lines.append(
            f"{name:<{width}}   {arrow(name):<2}  {_num(c.r2, '9.6f')}  "
            f"{_num(c.pearson_r, '+7.3f')}"
            f"  {_num(c.p_value, '7.4f')}  {sig:<6}  {METRICS.get(name, (0, ''))[1]}"
        )
    lines.append("-" * (len(head) + 30))
    lines.append(
        "↓/↑: smaller/larger means more collapse; →0: a signed CoV that collapse drives "
        "towards zero; r > 0 with val_loss means larger values go with worse generalization"
    )
    return "\n".join(lines)
