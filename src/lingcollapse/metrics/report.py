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


def shown_value(metrics: dict, name: str) -> str:
    """The value of ``name``, marked ``≈`` when it was estimated from sampled pairs."""
    text = format_value(metrics[name])
    return f"≈{text}" if f"{name}_ci95" in metrics else text


def interval_text(metrics: dict, name: str) -> str:
    """``95% [low, high]`` of an estimate (``NAME_ci95``), else ``""``."""
    interval = metrics.get(f"{name}_ci95")
    if not isinstance(interval, list | tuple) or len(interval) != 2:
        return ""
    return f"95% [{format_value(interval[0])}, {format_value(interval[1])}]"


def sampling_note(metrics: dict) -> list[str]:
    """What ``measure --sample-pairs`` estimated and skipped, in a line or two."""
    block = metrics.get("sampling")
    if not isinstance(block, dict):
        return []
    lines = [
        f"≈: estimated from {format_value(block.get('pairs'))} sampled pairs of "
        f"{format_value(block.get('pairs_total'))} (seed {block.get('seed')}), with the "
        "95% interval; the rest exact"
    ]
    for name, why in (block.get("skipped") or {}).items():
        lines.append(f"skipped {name}: {why}")
    return lines


def metrics_table(metrics: dict) -> str:
    """One line per metric (name, ↑/↓, value, description), then the setting in one line;
    estimates from sampled pairs marked ≈, their 95% interval after the description."""
    rows = [name for name in METRICS if name in metrics]
    width = max([len(name) for name in rows] + [6])
    lines = [f"{'metric':<{width}}      {'value':>13}  description", "-" * (width + 70)]
    for name in rows:
        interval = interval_text(metrics, name)
        about = f"{METRICS[name][1]}{'; ' if interval else ''}{interval}"
        lines.append(f"{name:<{width}}  {arrow(name):<2} {shown_value(metrics, name):>13}  {about}")
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
    shown = [f"{label} {shown_value(metrics, key)}" for label, key in setting if key in metrics]
    lines.append("  ".join(shown))
    lines.extend(sampling_note(metrics))
    lines.append(
        "↓/↑: smaller/larger means more collapse (or better generalization); "
        "→0: a signed CoV, collapse drives it towards zero"
    )
    return "\n".join(lines)
