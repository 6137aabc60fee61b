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
    """One line per metric (name, ↑/↓, value, description), then the setting in one line."""
    rows = [(name, metrics[name]) for name in METRICS if name in metrics]
    width = max([len(name) for name, _ in rows] + [6])
    lines = [f"{'metric':<{width}}      {'value':>13}  description", "-" * (width + 70)]
    for name, value in rows:
        lines.append(
            f"{name:<{width}}  {arrow(name):<2} {format_value(value):>13}  {METRICS[name][1]}"
        )
    lines.append("-" * (width + 70))
    setting = [
        ("model", "model"),
        ("layer", "layer"),
        ("corpus", "corpus"),
        ("tokenizer", "tokenizer"),
        ("S", "n_sequences"),
        ("T", "seq_len"),
        ("N", "n_samples"),
        ("V", "vocab_size"),
        ("C", "n_classes"),
        ("samples/class", "samples_per_class_mean"),
        ("± std", "samples_per_class_std"),
        ("d", "dim"),
        ("preset", "preset"),
        ("k", "cdnv_power"),
        ("min_count", "min_count"),
        ("degenerate pairs", "n_degenerate_pairs"),
    ]
    lines.append(
        "  ".join(
            f"{label} {format_value(metrics[key])}" for label, key in setting if key in metrics
        )
    )
    lines.append(
        "↓/↑: smaller/larger means more collapse (or better generalization); "
        "→0: a signed CoV, collapse drives it towards zero"
    )
    return "\n".join(lines)
