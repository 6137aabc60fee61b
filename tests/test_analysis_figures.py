"""Figures from a tiny synthetic results table: files, panels, skipped metrics."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from lingcollapse.analysis import figures


def synthetic_table(seed_models: int = 4) -> pd.DataFrame:
    """A 2×2 width/depth grid, 2 epoch counts, 2 weight decays, plus a seed group."""
    rng = np.random.default_rng(0)
    rows = []
    for w, d, e, wd in itertools.product((16, 32), (1, 2), (1, 3), (0.0005, 0.1)):
        size = w * w * d * 12
        loss = 4.0 - 0.3 * np.log2(w) - 0.2 * d - 0.1 * e + rng.normal(scale=0.05)
        rows.append(_row(f"{d}x{w}_{e}_{wd}", w, d, e, wd, 0, size, loss, rng))
    for s in range(1, seed_models):
        loss = 3.0 + rng.normal(scale=0.05)
        rows.append(_row(f"seed{s}", 32, 2, 1, 0.0005, s, 32 * 32 * 24, loss, rng))
    return pd.DataFrame(rows)


def _row(model, w, d, e, wd, seed, size, loss, rng):
    return {
        "model": model,
        "width": w,
        "depth": d,
        "n_params": size,
        "epochs": e,
        "weight_decay": wd,
        "seed": seed,
        "val_loss": loss,
        "nc1_cdnv": np.exp(loss - 5) * (1 + 0.1 * rng.random()),
        "gnc2_uniformity_cov": -0.5 + 0.1 * loss + 0.01 * rng.normal(),
        "unc3_duality_cov": 0.3 * loss + 0.05 * rng.normal(),
        "nc4_agreement": 0.5 - 0.1 * loss + 0.01 * rng.normal(),
        "nc2_equinorm_cov": 0.05 * loss + 0.01 * rng.random(),
        "nc2_equiangular_cov": 100 + rng.normal(),
        "nc3_duality_mean": 0.2 + 0.01 * rng.normal(),
    }


def panels(fig) -> int:
    """Data panels of a figure (colour bars left out)."""
    return sum(1 for ax in fig.axes if ax.get_label() != "<colorbar>")


def test_headline_has_four_panels_and_colour_bar():
    fig = figures.figure_headline(synthetic_table())
    assert panels(fig) == 4 and len(fig.axes) == 5
    first = next(ax for ax in fig.axes if ax.get_label() != "<colorbar>")
    assert first.get_xscale() == "log" and "Eq. 4" in first.get_xlabel()
    # the R² of what is drawn (log CDNV), above the panel where it covers no point
    df = synthetic_table()
    log_r2 = np.corrcoef(np.log10(df["nc1_cdnv"]), df["val_loss"])[0, 1] ** 2
    assert first.get_title(loc="right") == f"R² = {log_r2:.3f} (log x)"
    assert not first.texts
    last = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"][-1]
    raw = np.corrcoef(df["nc4_agreement"], df["val_loss"])[0, 1] ** 2
    assert last.get_title(loc="right") == f"R² = {raw:.3f}"


def test_absent_metric_panel_skipped():
    df = synthetic_table().drop(columns=["unc3_duality_cov", "nc3_duality_mean"])
    assert panels(figures.figure_headline(df)) == 3
    assert figures.figure_nc3(df.drop(columns=["nc3_duality_mean"], errors="ignore")) is None
    df["nc2_equinorm_cov"] = np.nan  # present but empty counts as absent
    assert panels(figures.figure_nc2(df)) == 2
    assert figures.figure_scaling(df, "nc1_quotient") is None


def test_r_squared_in_headline_matches_numpy():
    df = synthetic_table()
    expected = np.corrcoef(df["nc4_agreement"], df["val_loss"])[0, 1] ** 2
    assert figures.r_squared(df["nc4_agreement"], df["val_loss"]) == pytest.approx(expected)
    assert np.isnan(figures.r_squared([1, 1, 1], [1, 2, 3]))


def test_scaling_grid_rows_are_decays_columns_epochs():
    fig = figures.figure_scaling(synthetic_table(), "nc1_cdnv", "width")
    assert panels(fig) == 4  # 2 weight decays × 2 epoch counts
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0] == "1 epoch, β = 0.0005" and titles[-1] == "3 epochs, β = 0.1"
    assert len(fig.axes[0].get_lines()) == 2  # one line per depth
    fig = figures.figure_scaling(
        synthetic_table().drop(columns=["weight_decay"]), "nc1_cdnv", "depth"
    )
    assert panels(fig) == 2


def test_seed_groups_detected():
    groups = figures.seed_groups(synthetic_table(seed_models=4))
    assert len(groups) == 1 and len(groups[0]) == 4  # seed 0 from the grid plus 3 more
    assert figures.seed_groups(synthetic_table(seed_models=2)) == []
    fig = figures.figure_seeds(synthetic_table())
    assert panels(fig) == 7


def test_make_figures_writes_png_and_svg(tmp_path):
    made = figures.make_figures(synthetic_table(), tmp_path, scaling=("nc1_cdnv",))
    names = sorted(p.name for p in made)
    stems = {
        "fig1_headline",
        "fig2_nc2",
        "fig3_nc3",
        "seeds",
        "fig5_epochs",  # every architecture is measured at 1 and 3 epochs
        "decay",  # every architecture at both weight decays
        "fig20_norms",
        "fig21_interference",
        "fig22_logkernel",
        "fig27_duality",
        "fig28_duality_spread",
        "scaling_nc1_cdnv_vs_width",
        "scaling_nc1_cdnv_vs_depth",
    }
    assert names == sorted(f"{s}.{e}" for s in stems for e in ("png", "svg"))
    for p in made:
        head = p.read_bytes()[:8]
        assert p.stat().st_size > 1000
        assert head.startswith(b"\x89PNG") if p.suffix == ".png" else b"<?xml" in head


def test_make_figures_without_identity(tmp_path):
    df = synthetic_table()[["model", "val_loss", "nc1_cdnv"]]
    made = figures.make_figures(df, tmp_path)
    assert sorted(p.name for p in made) == ["fig1_headline.png", "fig1_headline.svg"]
