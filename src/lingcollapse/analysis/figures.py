"""Figures of the paper from a results table (Figures 1–3, Appendices E–P, Table 1).

Every ``figure_*`` function returns a matplotlib Figure (or None when nothing can be
drawn) so tests can count panels; :func:`make_figures` saves each as PNG and SVG.
Panels whose metric is absent (or all-NaN) are left out, never an error.
"""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window (also on headless machines)

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from lingcollapse.analysis.directions import label
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
LOG_SCALE = {"nc1_cdnv", "nc1_covariance_ratio", "nc1_quotient"}  # spans decades (Fig. 1, 6)
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
    return [n for n in names if n in df.columns and _values(df, n).notna().any()]


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
        sc = ax.scatter(x, y, s=18, alpha=0.85, edgecolors="none", **style)
        if name in LOG_SCALE and (x > 0).all():
            ax.set_xscale("log")
        ax.set_xlabel(_wrap(label(name)))
        ax.set_ylabel(label(target))
        ax.text(
            0.97,
            0.95,
            f"R² = {r_squared(x, y):.3f}",
            transform=ax.transAxes,
            ha="right",
            va="top",
            bbox={"boxstyle": "round", "fc": "white", "alpha": 0.8},
        )
    if norm is not None:
        fig.colorbar(sc, ax=axes[0].tolist(), label="parameters (log scale)", pad=0.01)
    fig.suptitle(title)
    return fig


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
    if any(c not in df.columns for c in need) or not _present(df, [metric]):
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
            if cell.empty:
                ax.text(
                    0.5,
                    0.5,
                    "no models",
                    transform=ax.transAxes,
                    ha="center",
                    va="center",
                    color="0.6",
                )
            if i == len(decays) - 1:
                ax.set_xlabel(label(along))
            if j == 0:
                ax.set_ylabel(label(metric), fontsize=8)
    ax0 = axes[0, 0]
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
    if metric in LOG_SCALE and (data[metric] > 0).all():
        ax0.set_yscale("log")
    handles, labels = ax0.get_legend_handles_labels()
    if not handles:
        for ax in axes.flat:
            handles, labels = ax.get_legend_handles_labels()
            if handles:
                break
    fig.legend(handles, labels, loc="center right", fontsize=8, frameon=False)
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
        ax.scatter(x, y, s=20, color="tab:purple")
        ax.set_xlabel(_wrap(label(name)), fontsize=8)
        ax.set_ylabel(label(target), fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(4))
        ax.text(
            0.97,
            0.95,
            f"R² = {r_squared(x, y):.3f}",
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize=8,
            bbox={"boxstyle": "round", "fc": "white", "alpha": 0.8},
        )
    for ax in axes.flat[len(names) :]:
        ax.remove()
    first = {k: _g(group.iloc[0].get(k)) for k in ("width", "depth", "epochs", "weight_decay")}
    fig.suptitle(
        f"Fixed architecture, {len(group)} seeds: width {first['width']}, depth "
        f"{first['depth']}, {first['epochs']} epoch(s), β = {first['weight_decay']}"
    )
    fig.tight_layout()
    return fig


def save(fig: Figure, path_stem: Path) -> list[Path]:
    """PNG and SVG beside each other, each written atomically; the figure is closed."""
    paths = []
    for ext in ("png", "svg"):
        path = path_stem.with_suffix(f".{ext}")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=ext, dpi=110, bbox_inches="tight", metadata=_metadata(ext))
        paths.append(path)
    plt.close(fig)
    return paths


def _metadata(ext: str) -> dict:
    # No creation dates: the same table gives byte-identical files.
    return {"Software": None} if ext == "png" else {"Date": None}


def make_figures(
    df: pd.DataFrame, out: Path, target: str = "val_loss", scaling=SCALING
) -> list[Path]:
    """Draw every figure that the table supports into ``out`` (PNG + SVG)."""
    out = Path(out)
    made: list[Path] = []
    plans = [
        ("fig1_headline", lambda: figure_headline(df, target)),
        ("fig2_nc2", lambda: figure_nc2(df, target)),
        ("fig3_nc3", lambda: figure_nc3(df, target)),
        ("seeds", lambda: figure_seeds(df, target)),
    ]
    for metric in scaling:
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
