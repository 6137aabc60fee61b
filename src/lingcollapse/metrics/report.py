"""Human-readable output of ``measure``: a table with ↑/↓ for which way is collapse."""

from __future__ import annotations

import math

from lingcollapse.metrics.names import METRICS, arrow


def format_value(value) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.6g}" if 1e-3 <= abs(value) < 1e5 or value == 0 else f"{value:.4e}"
    return str(value)


def metrics_table(metrics: dict) -> str:
    """One line per metric: name, arrow, value, description (known names first)."""
    rows = [(name, metrics[name]) for name in METRICS if name in metrics]
    rows += [
        (k, v)
        for k, v in metrics.items()
        if k not in METRICS and isinstance(v, int | float) and not isinstance(v, bool)
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{'metric':<{width}}     {'value':>13}  description", "-" * (width + 48)]
    for name, value in rows:
        desc = METRICS.get(name, (0, ""))[1]
        lines.append(f"{name:<{width}}  {arrow(name)}  {format_value(value):>13}  {desc}")
    lines.append("↓/↑: smaller/larger is more collapse (or better generalization)")
    return "\n".join(lines)
