"""Figures of the paper from a results table (Figures 1–3, 5, Appendices E–P, Table 1).

Every ``figure_*`` function returns a matplotlib Figure (or None when nothing can be
drawn) so tests can count panels; :func:`make_figures` saves each as PNG and SVG.
Panels whose metric is absent (or all-NaN) are left out, never an error.
"""

from __future__ import annotations

import html
import logging
import re
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window (also on headless machines)

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import (
    FuncFormatter,
    LogLocator,
    MaxNLocator,
    NullFormatter,
    NullLocator,
)

from lingcollapse.analysis.directions import label, plotted
from lingcollapse.io import atomic_path

log = logging.getLogger(__name__)

# Figure 1 (left to right): NC1, GNC2, UNC3, NC4.
HEADLINE = ("nc1_cdnv", "gnc2_uniformity_cov", "unc3_duality_cov", "nc4_agreement")
NC2 = ("nc2_equinorm_cov", "nc2_equiangular_cov", "gnc2_uniformity_cov")  # Figure 2
NC3 = ("nc3_duality_mean", "unc3_duality_cov")  # Figure 3
# Appendices E–P, in their order.
SCALING = (
    "nc1_cdnv",
    "nc2_norm_mean",
    "nc2_equinorm_cov",
    "nc2_interference_mean",
    "nc2_equiangular_cov",
    "gnc2_logkernel_mean",
    "gnc2_uniformity_cov",
    "nc3_duality_mean",
    "unc3_duality_cov",
    "nc4_agreement",
)
# Appendix figures against the target: (stem, metrics, title), in the paper's order.
APPENDIX = (
    ("fig20_norms", ("nc2_norm_mean", "nc2_equinorm_cov"), "Figure 20: log class-mean norms (NC2)"),
    (
        "fig21_interference",
        (
            "nc2_interference_mean",
            "nc2_equiangular_cov",
            "nc2_interference_dot_mean",
            "nc2_etf_error",
        ),
        "Figure 21: interference (NC2)",
    ),
    (
        "fig22_logkernel",
        ("gnc2_logkernel_mean", "gnc2_uniformity_cov"),
        "Figure 22: log-kernel distances (GNC2)",
    ),
    (
        "fig27_duality",
        ("nc3_dot_mean", "nc3_duality_mean", "nc3_zhu_error"),
        "Figure 27: classifier alignment (NC3)",
    ),
    (
        "fig28_duality_spread",
        ("nc3_dot_std", "unc3_duality_cov"),
        "Figure 28: its variation (UNC3)",
    ),
)
# What the authors' 2024-05 table holds where a §3 name is absent (see .published): its
# "GNC2" is Eq. 7's kernel on uncentred means, the one its Table 1 and Figure 1 show.
FALLBACK = {
    "gnc2_logkernel_mean": "gnc2_logkernel_uncentred_mean",
    "gnc2_logkernel_std": "gnc2_logkernel_uncentred_std",
    "gnc2_uniformity_cov": "gnc2_uniformity_uncentred_cov",
}
PANEL = 3.6  # inches per panel side

plt.rcParams.update(
    {
        "font.size": 9,
        "axes.titlesize": 10,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "svg.hashsalt": "lingcollapse",  # deterministic SVG ids
    }
)


def _present(df: pd.DataFrame, names) -> list[str]:
    """The columns of ``names`` that hold a value, each §3 name replaced by its
    :data:`FALLBACK` where only that is there (the authors' 2024-05 table)."""
    found = []
    for name in names:
        for column in (name, FALLBACK.get(name)):
            if column in df.columns and _values(df, column).notna().any():
                found.append(column)
                break
    return list(dict.fromkeys(found))


def _values(df: pd.DataFrame, name: str) -> pd.Series:
    return pd.to_numeric(df[name], errors="coerce")


def _wrap(text: str, width: int = 34) -> str:
    return textwrap.fill(text, width)


def r_squared(x, y) -> float:
    """Squared Pearson r over the finite pairs (NaN if fewer than 3 or constant)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return float("nan")
    return float(np.corrcoef(x[ok], y[ok])[0, 1] ** 2)


def _size_norm(df: pd.DataFrame):
    """Log colour scale of model size, or None when sizes are unknown."""
    if "n_params" not in df.columns:
        return None
    sizes = _values(df, "n_params")
    sizes = sizes[sizes > 0]
    if sizes.empty:
        return None
    lo, hi = float(sizes.min()), float(sizes.max())
    return LogNorm(lo, hi if hi > lo else lo * 10)


def _point_names(df: pd.DataFrame) -> list[str]:
    """What hovering over a model's point says: its id (its row number without one)."""
    models = df["model"].astype(str) if "model" in df else pd.Series(map(str, range(len(df))))
    return models.tolist()


def _scatter(fig: Figure, ax, x, y, names, **style):
    """``ax.scatter`` of the finite points only, each named for the SVG's hover titles."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    if "c" in style:
        style["c"] = np.asarray(style["c"], dtype=float)[ok]
    collection = ax.scatter(x[ok], y[ok], **style)
    _name_points(fig, collection, np.asarray(list(names), dtype=object)[ok])
    return collection


def _against_target(df: pd.DataFrame, names, target: str, title: str) -> Figure | None:
    """One scatter panel per metric against the target, coloured by size, R² annotated."""
    names = _present(df, names)
    if not names or target not in df.columns:
        return None
    fig, axes = plt.subplots(1, len(names), figsize=(PANEL * len(names) + 1, PANEL), squeeze=False)
    norm = _size_norm(df)
    y = _values(df, target)
    sc = None
    for ax, name in zip(axes[0], names, strict=True):
        x = _values(df, name)
        if norm is not None:  # coloured by model size on a log scale (Figure 1)
            style = {"c": _values(df, "n_params"), "norm": norm, "cmap": "viridis"}
        else:
            style = {"color": "tab:blue"}
        sc = _scatter(fig, ax, x, y, _point_names(df), s=18, alpha=0.85, edgecolors="none", **style)
        _r2_title(ax, name, x, y)
        ax.set_xlabel(_wrap(label(name)))
        ax.set_ylabel(label(target))
    if norm is not None:
        fig.colorbar(sc, ax=axes[0].tolist(), label="parameters (log scale)", pad=0.01)
    fig.suptitle(title)
    return fig


def _log_axis(ax, which: str, values) -> None:
    """Put axis ``which`` ("x" or "y") of ``ax`` on a log scale whose labels never collide:
    ticks at the decades where the values span two or more, at 1, 2 and 5 × 10^k where
    they span half a decade or more, else four plain ticks (a narrow span, as over the
    seeds of one architecture); minor ticks unlabelled."""
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    axis = ax.xaxis if which == "x" else ax.yaxis
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    decades = np.log10(v.max() / v.min()) if v.size else 0.0
    axis.set_minor_formatter(NullFormatter())
    if decades < 0.5:
        axis.set_major_locator(MaxNLocator(4))
        axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:.3g}"))
        axis.set_minor_locator(NullLocator())
        return
    subs = (1.0,) if decades >= 2 else (1.0, 2.0, 5.0)
    axis.set_major_locator(LogLocator(base=10, subs=subs, numticks=8))


def _r2_title(ax, name: str, x, y, fontsize: float = 9) -> None:
    """Put the R² of the plotted coordinates above the panel, where it covers no point;
    a :data:`LOG_SCALE` metric goes on a log axis and its R² is that of log10 x."""
    drawn, log_axis = plotted(name, x)
    if log_axis:
        _log_axis(ax, "x", x)
    else:  # long tick labels (−0.285) must not run into each other
        ax.xaxis.set_major_locator(MaxNLocator(4))
    text = f"R² = {r_squared(drawn, y):.3f}" + (" (log x)" if log_axis else "")
    ax.set_title(text, loc="right", fontsize=fontsize)


def figure_headline(df: pd.DataFrame, target: str = "val_loss") -> Figure | None:
    """Figure 1: NC1 (Eq. 4), GNC2 (Eq. 7), UNC3 (Eq. 8), NC4 (Eq. 10) vs the target."""
    return _against_target(
        df, HEADLINE, target, f"Neural collapse and generalization ({len(df)} models)"
    )


def figure_nc2(df: pd.DataFrame, target: str = "val_loss") -> Figure | None:
    """Figure 2: equinormness (Eq. 5), equiangularity (Eq. 6), uniformity (Eq. 7)."""
    return _against_target(df, NC2, target, "Geometric structures: (G)NC2")


def figure_nc3(df: pd.DataFrame, target: str = "val_loss") -> Figure | None:
    """Figure 3: self-duality NC3 (Eq. 8) and uniform duality UNC3."""
    return _against_target(df, NC3, target, "Classifier duality: (U)NC3")


def figure_scaling(df: pd.DataFrame, metric: str, along: str = "width") -> Figure | None:
    """Appendices E–P: ``metric`` against width (a line per depth) or depth (per width).

    One panel per epoch count (columns), one row per weight decay.
    """
    other = "depth" if along == "width" else "width"
    need = [metric, along, other]
    if any(c not in df.columns for c in need) or _present(df, [metric]) != [metric]:
        return None
    data = df.copy()
    for c in (along, other, "epochs", "weight_decay"):
        if c in data.columns:
            data[c] = pd.to_numeric(data[c], errors="coerce")
    data = data[data[metric].notna() & data[along].notna() & data[other].notna()]
    if data.empty:
        return None
    epochs = _levels(data, "epochs")
    decays = _levels(data, "weight_decay")
    fig, axes = plt.subplots(
        len(decays),
        len(epochs),
        figsize=(3.0 * len(epochs) + 1.2, 2.6 * len(decays) + 0.6),
        squeeze=False,
        sharex=True,
        sharey=True,
    )
    lines = sorted(data[other].unique())
    colours = plt.get_cmap("plasma")(np.linspace(0.05, 0.85, len(lines)))
    for i, wd in enumerate(decays):
        for j, ep in enumerate(epochs):
            ax = axes[i, j]
            cell = _select(data, wd, ep)
            for colour, value in zip(colours, lines, strict=True):
                part = cell[cell[other] == value].groupby(along)[metric].mean()
                if not part.empty:
                    ax.plot(
                        part.index,
                        part.to_numpy(float),
                        "o-",
                        ms=3,
                        color=colour,
                        label=f"{'L' if other == 'depth' else 'd'}={value:g}",
                    )
            ax.set_title(_panel_title(wd, ep), fontsize=9)
    empty = [[_select(data, wd, ep).empty for ep in epochs] for wd in decays]
    for j in range(len(epochs)):  # no empty panels; x ticks and label under each column
        kept = [i for i in range(len(decays)) if not empty[i][j]]
        for i in range(len(decays)):
            if empty[i][j]:
                axes[i, j].remove()
        if kept:
            axes[kept[-1], j].tick_params(labelbottom=True)
            axes[kept[-1], j].set_xlabel(label(along))
    fig.supylabel(label(metric), fontsize=9)  # one label: the rows' titles say their β
    ax0 = next(ax for ax in axes.flat if ax in fig.axes)  # shares its scales with all
    if along == "width":  # widths double: log axis, ticked at the widths themselves
        ax0.set_xscale("log", base=2)
        ticks = sorted(data[along].unique())
        ax0.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax0.minorticks_off()
        for ax in axes.flat:  # 768 and 1024 sit close on a log axis
            ax.tick_params(axis="x", labelsize=7)
    else:
        ticks = sorted(data[along].unique())
        ax0.set_xticks(ticks, [f"{t:g}" for t in ticks])
    if plotted(metric, data[metric])[1]:
        _log_axis(ax0, "y", data[metric])
    keyed = {}  # every line drawn in any panel, once, in the order of its value
    for ax in fig.axes:
        for handle, text in zip(*ax.get_legend_handles_labels(), strict=True):
            keyed.setdefault(text, handle)
    order = [f"{'L' if other == 'depth' else 'd'}={value:g}" for value in lines]
    shown = [t for t in order if t in keyed]
    fig.legend([keyed[t] for t in shown], shown, loc="center right", fontsize=8, frameon=False)
    fig.suptitle(f"{label(metric)} vs {along}")
    fig.tight_layout(rect=(0, 0, 0.9, 1))
    return fig


def _levels(df: pd.DataFrame, column: str) -> list:
    """Sorted distinct values (a single None level when the column is absent/empty)."""
    if column not in df.columns or df[column].isna().all():
        return [None]
    return sorted(df[column].dropna().unique())


def _select(df: pd.DataFrame, wd, ep) -> pd.DataFrame:
    if wd is not None:
        df = df[df["weight_decay"] == wd]
    if ep is not None:
        df = df[df["epochs"] == ep]
    return df


def _panel_title(wd, ep) -> str:
    parts = []
    if ep is not None:
        parts.append(f"{ep:g} epoch{'s' if ep != 1 else ''}")
    if wd is not None:
        parts.append(f"β = {wd:g}")
    return ", ".join(parts) or "all models"


def _g(value) -> str:
    try:
        return f"{float(value):g}"
    except (TypeError, ValueError):
        return str(value)


def seed_groups(df: pd.DataFrame, min_seeds: int = 3) -> list[pd.DataFrame]:
    """Fixed-architecture groups (same width, depth, epochs, weight decay) with ≥ 3 seeds.

    Table 1's setting: one architecture, many data-shuffling seeds.
    """
    keys = [k for k in ("width", "depth", "epochs", "weight_decay") if k in df.columns]
    if "seed" not in df.columns or not keys:
        return []
    data = df.copy()
    groups = []
    for _, group in data.groupby(keys, dropna=False):
        if group["seed"].nunique(dropna=True) >= min_seeds:
            groups.append(group)
    return sorted(groups, key=len, reverse=True)


def figure_seeds(df: pd.DataFrame, target: str = "val_loss", metrics=None) -> Figure | None:
    """Table 1 as scatter plots: the largest many-seed group, each metric vs the target."""
    groups = seed_groups(df)
    if not groups or target not in df.columns:
        return None
    group = groups[0]
    names = _present(group, metrics or (*HEADLINE[:1], *NC2, *NC3, HEADLINE[-1]))
    if not names:
        return None
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.9 * rows), squeeze=False)
    y = _values(group, target)
    for ax, name in zip(axes.flat, names, strict=False):
        x = _values(group, name)
        _scatter(fig, ax, x, y, _point_names(group), s=20, color="tab:purple")
        _r2_title(ax, name, x, y, fontsize=8)
        ax.set_xlabel(_wrap(label(name)), fontsize=8)
        ax.set_ylabel(label(target), fontsize=8)
    for ax in axes.flat[len(names) :]:
        ax.remove()
    first = {k: _g(group.iloc[0].get(k)) for k in ("width", "depth", "epochs", "weight_decay")}
    fig.suptitle(
        f"Fixed architecture, {len(group)} seeds: width {first['width']}, depth "
        f"{first['depth']}, {first['epochs']} epoch(s), β = {first['weight_decay']}"
    )
    fig.tight_layout()
    return fig


# Figure 5 and the training view: x is the epochs trained when measured (k + 1), so a
# 10-epoch run measured after its 6th epoch sits at 6, beside a 6-epoch run's last model.
TRAINING = tuple(dict.fromkeys((*HEADLINE, *NC2, *NC3)))
# Depth is told apart by marker *and* line style, so it survives grey-scale printing.
DEPTH_STYLES = (
    ("o", "-"),
    ("s", "--"),
    ("^", ":"),
    ("D", "-."),
    ("v", (0, (5, 1, 1, 1))),
    ("P", (0, (1, 1))),
    ("X", (0, (3, 1, 1, 1, 1, 1))),
    ("*", (0, (6, 2))),
)
DECAY_STYLES = ("-", "--", ":", "-.")
_CHECKPOINT = re.compile(r"@\d+$")  # the ``@k`` of an authors'-style model id


def run_of(df: pd.DataFrame) -> pd.Series:
    """The training run each row was measured from, as text.

    ``run`` where the table has it; else the model id without ``@k`` (the authors' ids);
    else rows of equal identity (family, width, depth, schedule, β, seed) are one run.
    Without a schedule column the schedule is taken to be ``epochs``, so every row is a
    run of its own: measurements of one run cannot be told from runs of other lengths.
    """
    fallback = _identity_runs(df)
    if "model" in df.columns:
        ids = df["model"].astype(str)
        has_k = ids.str.contains(_CHECKPOINT)
        fallback = fallback.where(~has_k, ids.str.replace(_CHECKPOINT, "", regex=True))
    if "run" in df.columns:
        return df["run"].where(df["run"].notna(), fallback).astype(str)
    return fallback


def _identity_runs(df: pd.DataFrame) -> pd.Series:
    """Rows of equal identity and schedule as one run; a row of its own without width
    and depth."""
    if "width" not in df.columns or "depth" not in df.columns:
        return pd.Series([f"row {i}" for i in range(len(df))], index=df.index)
    schedule = _values(df, "epochs") if "epochs" in df.columns else pd.Series(np.nan, df.index)
    if "schedule_epochs" in df.columns:
        schedule = _values(df, "schedule_epochs").fillna(schedule)
    # map(str), not astype(str): pandas' string dtype keeps a missing value missing
    parts = [df[c].map(str) for c in ("family", "width", "depth") if c in df.columns]
    parts.append(schedule.map(str))
    parts += [df[c].map(str) for c in ("weight_decay", "seed") if c in df.columns]
    return pd.concat(parts, axis=1).agg("|".join, axis=1)


def _numeric(df: pd.DataFrame, columns) -> pd.DataFrame:
    data = df.copy()
    for c in columns:
        if c in data.columns:
            data[c] = pd.to_numeric(data[c], errors="coerce")
    return data


def architecture_points(df: pd.DataFrame, metrics) -> pd.DataFrame | None:
    """Figure 5's points: per (architecture, β, epochs), the mean of each metric over
    the models there (the seeds, where several); ``n`` counts them.

    Only architectures measured at ≥ 2 distinct epochs are kept; None when there are
    none or the identity columns are absent.
    """
    if not metrics or any(c not in df.columns for c in ("width", "depth", "epochs")):
        return None
    data = _numeric(df, ("width", "depth", "epochs", "weight_decay"))
    data = data.dropna(subset=["width", "depth", "epochs"])
    arch = [c for c in ("family", "width", "depth", "weight_decay") if c in data.columns]
    grouped = data.groupby([*arch, "epochs"], dropna=False)
    points = grouped[list(metrics)].mean().join(grouped.size().rename("n")).reset_index()
    spread = points.groupby(arch, dropna=False)["epochs"].transform("nunique")
    points = points[spread >= 2]
    return None if points.empty else points.reset_index(drop=True)


def figure_epochs(df: pd.DataFrame, target: str = "val_loss") -> Figure | None:
    """Figure 5 (Appendix C): NC1 (CDNV, Eq. 4, log axis) and the target against epochs.

    One row per weight decay β, a line per architecture (colour: width, marker and
    line style: depth), seeds averaged. Points of one line may come from runs with
    different schedules (a 1-epoch run gives epoch 1, a 10-epoch run epochs 6 and 10).
    """
    metrics = _present(df, ("nc1_cdnv", target))
    points = architecture_points(df, metrics)
    if points is None:
        return None
    decays = _levels(points, "weight_decay")
    fig, axes = plt.subplots(
        len(decays),
        len(metrics),
        figsize=(3.9 * len(metrics) + 1.6, 3.1 * len(decays) + 0.9),
        squeeze=False,
        sharex=True,
        sharey="col",
    )
    colours, styles = _width_colours(points), _depth_styles(points)
    for i, wd in enumerate(decays):
        row = points if wd is None else points[points["weight_decay"] == wd]
        for j, metric in enumerate(metrics):
            _architecture_lines(axes[i, j], row, metric, colours, styles)
            axes[i, j].set_title(_panel_title(wd, None))
            axes[i, j].set_ylabel(_axis_label(metric, 34))
    _epoch_axis(axes, points)
    if "nc1_cdnv" in metrics and (points["nc1_cdnv"].dropna() > 0).all():
        _log_axis(axes[0, 0], "y", points["nc1_cdnv"])
    _architecture_legend(fig, colours, styles)
    what = "validation loss" if target == "val_loss" else label(target)
    fig.suptitle(f"Figure 5: collapse (NC1) and {what} over training")
    fig.tight_layout(rect=(0, 0.03, 0.84, 1))
    fig.text(0.01, 0.01, _points_note(points), fontsize=7.5, color="0.35", va="bottom")
    return fig


def _axis_label(name: str, width: int = 30) -> str:
    """A wrapped label that never splits "(Eq. 5) ↓" or a hyphenated word across lines."""
    glued = label(name).replace("Eq. ", "Eq.\u00a0").replace(") ", ")\u00a0")
    return textwrap.fill(glued, width, break_on_hyphens=False)


def _width_colours(points: pd.DataFrame) -> dict:
    # Sequential by rank (widths double, so rank ≈ log width); stop before viridis'
    # pale yellow, which vanishes on white.
    widths = sorted(points["width"].unique())
    return dict(
        zip(widths, plt.get_cmap("viridis")(np.linspace(0, 0.88, len(widths))), strict=True)
    )


def _depth_styles(points: pd.DataFrame) -> dict:
    depths = sorted(points["depth"].unique())
    return {d: DEPTH_STYLES[k % len(DEPTH_STYLES)] for k, d in enumerate(depths)}


def _architecture_lines(ax, row: pd.DataFrame, metric: str, colours, styles) -> None:
    """One line per architecture; labelled ``LxW`` (depth × width, the authors' order)."""
    keys = [c for c in ("family", "width", "depth") if c in row.columns]
    for _, part in row.groupby(keys, dropna=False):
        part = part.dropna(subset=[metric]).sort_values("epochs")
        if part.empty:
            continue
        first = part.iloc[0]
        marker, style = styles[first["depth"]]
        name = f"{first['depth']:g}x{first['width']:g}"
        if "family" in keys:
            name = f"{first['family']} {name}"
        ax.plot(
            part["epochs"],
            part[metric].to_numpy(float),
            marker=marker,
            ls=style,
            ms=3.5,
            lw=1.0,
            alpha=0.85,
            color=colours[first["width"]],
            label=name,
        )


def _epoch_axis(axes, points: pd.DataFrame) -> None:
    ticks = sorted(points["epochs"].unique())
    axes[0, 0].set_xticks(ticks, [f"{t:g}" for t in ticks])
    for ax in axes[-1]:
        ax.set_xlabel("epochs trained")


def _architecture_legend(fig: Figure, colours: dict, styles: dict) -> None:
    """Two keys instead of 30 entries: colour → width, marker/line style → depth."""
    widths = [Line2D([], [], color=c, lw=2.5, label=f"{w:g}") for w, c in colours.items()]
    depths = [
        Line2D([], [], color="0.25", marker=m, ls=ls, ms=4, lw=1, label=f"{d:g}")
        for d, (m, ls) in styles.items()
    ]
    kw = {"loc": "upper left", "fontsize": 8, "title_fontsize": 8.5, "frameon": False}
    fig.legend(handles=widths, title="width d", bbox_to_anchor=(0.85, 0.92), **kw)
    # The depth key starts below the width key, whatever the figure's height: a legend
    # row is about 0.21 inch at this font size, plus the title and a gap.
    below = 0.92 - (len(widths) + 2.5) * 0.21 / fig.get_figheight()
    fig.legend(
        handles=depths, title="depth L", bbox_to_anchor=(0.85, below), handlelength=3.2, **kw
    )


def _points_note(points: pd.DataFrame) -> str:
    """Which points average several models (Table 1's 21 seeds of 2x768 would
    otherwise be 21 lines)."""
    many = points[points["n"] > 1]
    if many.empty:
        return "One model per point."
    examples = [
        f"{r.depth:g}x{r.width:g}, {r.epochs:g} epoch{'s' if r.epochs != 1 else ''}"
        + (f", β = {r.weight_decay:g}" if "weight_decay" in many.columns else "")
        + f": {r.n} models"
        for r in many.head(3).itertuples()
    ]
    more = f" and {len(many) - 3} more" if len(many) > 3 else ""
    return (
        "Lines: depth x width. Where an architecture has several models at one epoch "
        "(seeds, or runs of different lengths measured there), the point is their mean "
        f"({'; '.join(examples)}{more})."
    )


def run_curves(df: pd.DataFrame, metrics) -> pd.DataFrame | None:
    """The training view's points: per (run, epochs), the mean of each metric; only
    runs measured at ≥ 2 distinct epochs. None when no run is."""
    if not metrics or "epochs" not in df.columns:
        return None
    data = _numeric(df, ("epochs", "weight_decay", "n_params"))
    data["run"] = run_of(df)
    data = data.dropna(subset=["epochs"])
    extra = [c for c in ("n_params", "weight_decay") if c in data.columns]
    grouped = data.groupby(["run", "epochs"])
    curves = grouped[list(metrics)].mean().join(grouped[extra].first()).reset_index()
    curves = curves[curves.groupby("run")["epochs"].transform("nunique") >= 2]
    return None if curves.empty else curves.reset_index(drop=True)


def figure_training(df: pd.DataFrame, metrics=None, target: str = "val_loss") -> Figure | None:
    """Every property of Figures 1–3 (Eqs. 4–10) and the target against epochs trained,
    a line per training run (Figure 5's view, run by run), coloured by model size."""
    names = _present(df, metrics or (*TRAINING, target))
    curves = run_curves(df, names)
    if curves is None:
        return None
    fig, axes = _panels(len(names))
    norm = _size_norm(curves)
    decays = _levels(curves, "weight_decay")
    for ax, name in zip(axes.flat, names, strict=False):
        _run_lines(ax, curves, name, norm, decays)
    _close_panels(fig, axes, len(names), "epochs trained")
    _training_keys(fig, axes, norm, decays)
    fig.suptitle(f"Training: {curves['run'].nunique()} runs measured at ≥ 2 epochs")
    return fig


def _panels(count: int) -> tuple[Figure, np.ndarray]:
    """Up to four panels a row, sized for a page, laid out by matplotlib."""
    cols = min(4, count)
    rows = -(-count // cols)
    size = (3.3 * cols + 1.0, 2.8 * rows + 0.8)
    return plt.subplots(rows, cols, figsize=size, squeeze=False, layout="constrained")


def _close_panels(fig: Figure, axes, used: int, xlabel: str) -> None:
    """Remove the spare panels; label the x-axis under each column's lowest panel."""
    for ax in axes.flat[used:]:
        ax.remove()
    _label_bottom(fig, axes, xlabel)


def _run_lines(ax, curves: pd.DataFrame, name: str, norm, decays) -> None:
    """One line per run, labelled with the run's name."""
    for run, part in curves.groupby("run"):
        part = part.dropna(subset=[name]).sort_values("epochs")
        if part.empty:
            continue
        colour, style = _run_style(part.iloc[0], norm, decays)
        ax.plot(
            part["epochs"],
            part[name].to_numpy(float),
            marker="o",
            ls=style,
            ms=2.5,
            lw=0.9,
            alpha=0.75,
            color=colour,
            label=run,
        )
    if plotted(name, curves[name])[1]:
        _log_axis(ax, "y", curves[name])
    else:
        ax.yaxis.set_major_locator(MaxNLocator(5))
    ax.set_ylabel(_axis_label(name), fontsize=8)
    ticks = sorted(curves["epochs"].unique())
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])


def _run_style(first: pd.Series, norm, decays) -> tuple:
    """Colour by size (grey when unknown: a NaN would map to a transparent colour) and
    line style by weight decay."""
    size = first.get("n_params", np.nan)
    colour = "0.5" if norm is None or not size > 0 else plt.get_cmap("viridis")(norm(size))
    wd = first.get("weight_decay")
    style = DECAY_STYLES[decays.index(wd) % len(DECAY_STYLES)] if wd in decays else "-"
    return colour, style


def _label_bottom(fig: Figure, axes, text: str) -> None:
    """``text`` under the lowest panel of each column (the last row may be short)."""
    for column in axes.T:
        kept = [ax for ax in column if ax in fig.axes]  # removed spare panels are not
        if kept:
            kept[-1].set_xlabel(text)


def _training_keys(fig: Figure, axes, norm, decays) -> None:
    """Colour bar of model size and, with several β, a key to the line styles."""
    kept = [ax for ax in axes.flat if ax in fig.axes]
    if norm is not None:
        bar = ScalarMappable(norm=norm, cmap="viridis")
        fig.colorbar(bar, ax=kept, label="parameters (log scale)", pad=0.01, aspect=40)
    if len(decays) > 1:
        styles = [
            Line2D([], [], color="0.3", ls=DECAY_STYLES[k % len(DECAY_STYLES)], label=f"β = {wd:g}")
            for k, wd in enumerate(decays)
        ]
        fig.legend(
            handles=styles, loc="outside lower center", ncols=len(styles), fontsize=8, frameon=False
        )


def save(fig: Figure, path_stem: Path) -> list[Path]:
    """PNG and SVG beside each other, each written atomically; the figure is closed. In
    the SVG each labelled point (:func:`_name_points`) carries a ``<title>``: hovering
    over it in a browser names its model."""
    paths = []
    for ext in ("png", "svg"):
        path = path_stem.with_suffix(f".{ext}")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=ext, dpi=110, bbox_inches="tight", metadata=_metadata(ext))
            if ext == "svg" and getattr(fig, "point_names", None):
                svg = _titled_points(tmp.read_text(), fig.point_names, _point_values(fig))
                tmp.write_text(svg)
        paths.append(path)
    plt.close(fig)
    return paths


def _name_points(fig: Figure, collection, names) -> None:
    """Remember the name of each point of a scatter ``collection`` for the SVG (in the
    order drawn: NaN points must have been left out, as matplotlib draws none)."""
    registry = fig.__dict__.setdefault("point_names", {})
    gid = f"lcpoints{len(registry)}"
    collection.set_gid(gid)
    registry[gid] = [str(n) for n in names]
    fig.__dict__.setdefault("point_collections", {})[gid] = collection


def _point_values(fig: Figure) -> dict[str, tuple[str, str, np.ndarray]]:
    """Per named scatter: its panel's axis labels (the figure's bottom label where the
    panel has none) and the data coordinates of its points, for the SVG's attributes."""
    out = {}
    for gid, collection in getattr(fig, "point_collections", {}).items():
        ax = collection.axes
        xlabel = ax.get_xlabel() or _shared_xlabel(fig) or "x"
        ylabel = ax.get_ylabel() or "y"
        out[gid] = (xlabel, ylabel, np.asarray(collection.get_offsets(), dtype=float))
    return out


def _shared_xlabel(fig: Figure) -> str:
    """The x label of the figure's panels (set under the bottom row only)."""
    return next((ax.get_xlabel() for ax in fig.axes if ax.get_xlabel()), "")


_USE = re.compile(r"<use\b[^>]*?/>")


_G_TAG = re.compile(r"<g\b[^>]*?(/?)>|</g>")


def _group_end(svg: str, start: int) -> int:
    """Where the ``<g>`` opened just before ``start`` closes (its groups nest: matplotlib
    wraps each clipped marker in one)."""
    depth = 1
    for tag in _G_TAG.finditer(svg, start):
        if tag.group(0) == "</g>":
            depth -= 1
            if depth == 0:
                return tag.start()
        elif not tag.group(1):  # not self-closing
            depth += 1
    return len(svg)


def _titled_points(svg: str, names: dict[str, list[str]], values: dict | None = None) -> str:
    """Give the i-th marker of each named scatter group the i-th name as its ``<title>``
    and as ``data-model``; with ``values`` (:func:`_point_values`) also ``data-x``/``data-y``
    (its coordinates) and, on the group, ``data-xlabel``/``data-ylabel``: what the report's
    tooltip shows."""
    for gid, labels in names.items():
        start = svg.find(f'id="{gid}"')
        if start < 0:
            continue
        end = _group_end(svg, start)
        group = svg[start:end]
        uses = list(_USE.finditer(group))
        if len(uses) != len(labels):  # points clipped or merged: leave the figure as it is
            continue
        xlabel, ylabel, xy = (values or {}).get(gid, ("", "", None))
        if xy is not None and len(xy) != len(labels):
            xy = None
        out, last = [], 0
        for i, (match, text) in enumerate(zip(uses, labels, strict=True)):
            title = html.escape(text)
            attrs = f' data-model="{title}"'
            if xy is not None:
                attrs += f' data-x="{xy[i, 0]:.6g}" data-y="{xy[i, 1]:.6g}"'
            out.append(group[last : match.start()])
            out.append(match.group(0)[:-2].rstrip() + f"{attrs}><title>{title}</title></use>")
            last = match.end()
        out.append(group[last:])
        if xy is not None:  # the labels once, on the group's opening tag
            at = len(f'id="{gid}"')
            label = " ".join(xlabel.split()), " ".join(ylabel.split())
            out[0] = (
                out[0][:at]
                + f' data-xlabel="{html.escape(label[0])}" data-ylabel="{html.escape(label[1])}"'
                + out[0][at:]
            )
        svg = svg[:start] + "".join(out) + svg[end:]
    return svg


def _metadata(ext: str) -> dict:
    # No creation dates: the same table gives byte-identical files.
    return {"Software": None} if ext == "png" else {"Date": None}


# Layer-wise: the Figure 1–3 properties and NCC accuracy; no validation loss, which is
# the model's (an inner layer's states never meet the output layer).
LAYERWISE = (*TRAINING, "ncc_acc")


def figure_layers(layers: pd.DataFrame | None, metrics=None) -> Figure | None:
    """Every property against depth: the layer index (0 = the embeddings, i = the output
    of block i, the last point = the input of the output layer, after the final norm), a
    line per model, coloured by model size. None without inner layers."""
    if layers is None or "layer_index" not in layers.columns or layers.empty:
        return None
    data = _numeric(layers, ("layer_index", "n_params", "weight_decay"))
    names = _present(data, metrics or LAYERWISE)
    if not names or data.groupby("model")["layer_index"].nunique().max() < 2:
        return None
    fig, axes = _panels(len(names))
    norm = _size_norm(data)
    for ax, name in zip(axes.flat, names, strict=False):
        for _, part in data.groupby("model"):
            part = part.dropna(subset=[name]).sort_values("layer_index")
            if part.empty:
                continue
            colour, _ = _run_style(part.iloc[0], norm, [])
            x, y = part["layer_index"], part[name].to_numpy(float)
            ax.plot(x, y, "o-", ms=2.5, lw=0.9, alpha=0.8, color=colour)
        if plotted(name, data[name])[1]:
            _log_axis(ax, "y", data[name])
        ax.set_ylabel(_axis_label(name), fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _close_panels(fig, axes, len(names), "layer")
    _training_keys(fig, axes, norm, [])
    fig.suptitle(
        f"Layer-wise collapse, {data['model'].nunique()} model(s): layer 0 = the token "
        "embeddings, the last = the output layer's input"
    )
    return fig


def make_figures(
    df: pd.DataFrame,
    out: Path,
    target: str = "val_loss",
    scaling=SCALING,
    layers: pd.DataFrame | None = None,
    permutations: int | None = None,
) -> list[Path]:
    """Draw every figure that the table (and the layer table) supports into ``out``
    (PNG + SVG)."""
    out = Path(out)
    made: list[Path] = []
    plans = [
        ("layers", lambda: figure_layers(layers)),
        ("fig1_headline", lambda: figure_headline(df, target)),
        ("fig2_nc2", lambda: figure_nc2(df, target)),
        ("fig3_nc3", lambda: figure_nc3(df, target)),
        ("seeds", lambda: figure_seeds(df, target)),
        ("fig5_epochs", lambda: figure_epochs(df, target)),
        ("decay", lambda: figure_decay(df, permutations=permutations)),
        ("training", lambda: figure_training(df, target=target)),
    ]
    for stem, names, title in APPENDIX:
        plans.append((stem, lambda n=names, t=title: _against_target(df, n, target, t)))
    for metric in _present(df, scaling):
        for along in ("width", "depth"):
            plans.append(
                (f"scaling_{metric}_vs_{along}", lambda m=metric, a=along: figure_scaling(df, m, a))
            )
    for stem, draw in plans:
        fig = draw()
        if fig is None:
            log.debug("figure %s skipped: its columns are absent", stem)
            continue
        made.extend(save(fig, out / stem))
    return made


# §5.3: the properties compared across weight decays, in Figure 1–3's order.
DECAY = ("nc1_cdnv", *NC2, *NC3, "nc4_agreement", "val_loss")


def figure_decay(df: pd.DataFrame, metrics=None, permutations: int | None = None) -> Figure | None:
    """§5.3: each metric of a strong-β model against its weak-β twin (same model
    otherwise, :mod:`.decay`), with y = x; above each panel, in how many pairs the
    strong β collapses more and the paired test's p."""
    from lingcollapse.analysis.decay import compare_decays, decay_levels, decay_pairs

    pairs = decay_pairs(df)
    if pairs is None:
        return None
    names = [n for n in _present(df, metrics or DECAY) if f"{n}_weak" in pairs]
    extra = {} if permutations is None else {"permutations": permutations}
    tests = compare_decays(df[["weight_decay", *_pair_columns(df), *names]], **extra)
    names = [n for n in names if n in tests]
    if not names:
        return None
    weak, strong = decay_levels(df)
    fig, axes = _panels(len(names))
    pair_names = [f"{s} (y) and {w} (x)" for s, w in zip(*_pair_models(pairs), strict=True)]
    for ax, name in zip(axes.flat, names, strict=False):
        x = _values(pairs, f"{name}_weak").to_numpy(float)
        y = _values(pairs, f"{name}_strong").to_numpy(float)
        _scatter(fig, ax, x, y, pair_names, s=14, alpha=0.8, color="tab:green", edgecolors="none")
        lo, hi = np.nanmin([x.min(), y.min()]), np.nanmax([x.max(), y.max()])
        ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8, ls="--", zorder=0)
        if plotted(name, np.concatenate([x, y]))[1]:
            _log_axis(ax, "x", np.concatenate([x, y]))
            _log_axis(ax, "y", np.concatenate([x, y]))
        t = tests[name]
        won = round(t.share_more_collapsed * t.n_pairs)
        ax.set_title(
            f"β={_g(strong)} more collapsed: {won}/{t.n_pairs}, p = {t.p_value:.2g}", fontsize=8
        )
        ax.set_ylabel(_axis_label(name), fontsize=8)
    _close_panels(fig, axes, len(names), f"the same model with β = {_g(weak)}")
    fig.suptitle(
        f"Weight decay (§5.3): β = {_g(strong)} (y) against β = {_g(weak)} (x), "
        f"{len(pairs)} pairs; dashed: y = x"
    )
    return fig


def _pair_models(pairs: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The strong- and weak-β model of each pair, by id (by row where ids are absent)."""
    if "model_strong" in pairs and "model_weak" in pairs:
        return pairs["model_strong"].astype(str).tolist(), pairs["model_weak"].astype(str).tolist()
    rows = [str(i) for i in range(len(pairs))]
    return rows, rows


def _pair_columns(df: pd.DataFrame) -> list[str]:
    from lingcollapse.analysis.decay import PAIR_KEYS

    return [k for k in PAIR_KEYS if k in df.columns]


def figure_class_counts(counts, top: int = 500, tokenizer=None) -> Figure | None:
    """Figure 4 (Appendix A): the samples of the ``top`` most frequent classes, log scale,
    beside the mean over all C classes that occur; ``counts`` a
    :class:`lingcollapse.data.counts.ClassCounts`."""
    from lingcollapse.data.counts import top_classes

    rows = top_classes(counts, top, tokenizer)
    if not rows:
        return None
    info = counts.summary()
    y = np.array([n for _, n, _ in rows], dtype=float)
    fig, ax = plt.subplots(figsize=(9.5, 3.8), layout="constrained")
    ax.bar(np.arange(1, len(y) + 1), y, width=1.0, color="tab:blue", linewidth=0)
    ax.set_yscale("log")
    ax.set_xlim(0, len(y) + 1)
    mean, std = info["samples_per_class_mean"], info["samples_per_class_std"]
    ax.axhline(mean, color="tab:red", lw=1.0, ls="--")
    ax.set_xlabel("class rank (most frequent first)")
    ax.set_ylabel("samples (log scale)")
    head = ", ".join(f"{text!r} {n:,}" for _, n, text in rows[:5])
    ax.legend(
        handles=[
            Line2D(
                [],
                [],
                color="tab:red",
                ls="--",
                label=f"mean over all {info['n_classes']:,} classes: {mean:,.0f} (std {std:,.0f})",
            ),
            Line2D([], [], color="none", label=f"most frequent: {head}"),
        ],
        loc="upper right",
        fontsize=8,
        frameon=False,
    )
    what = f" of {info['corpus']}" if info.get("corpus") else ""
    fig.suptitle(
        f"Figure 4: the {len(y)} most frequent of C = {info['n_classes']:,} classes{what} "
        f"(N = {info['n_samples']:,} samples, V = {info['vocab_size']:,})"
    )
    return fig
