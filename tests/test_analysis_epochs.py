"""Figure 5 (Appendix C) and the training view: panels, lines and plotted values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lingcollapse.analysis import figures, published
from lingcollapse.cli import main
from test_analysis import PUBLISHED, needs_published
from test_analysis_figures import panels, synthetic_table


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    if not PUBLISHED.is_file():
        pytest.skip("published data absent")
    return published.load_published(PUBLISHED)


def data_axes(fig):
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def line(ax, name: str):
    (found,) = [ln for ln in ax.get_lines() if ln.get_label() == name]
    return found


def model(table: pd.DataFrame, name: str) -> pd.Series:
    return table[table["model"] == name].iloc[0]


@needs_published
def test_published_runs_are_ids_without_checkpoint(table):
    row = model(table, "02x0768_10L@5")
    assert row["run"] == "02x0768_10L" and row["epochs"] == 6 and row["schedule_epochs"] == 10
    assert set(table.loc[table["run"] == "02x0768_10L", "epochs"]) == {6, 10}
    # 30 architectures × (1-, 3-, 10-epoch runs at β = 0.0005; 1-, 10-epoch at β = 0.1)
    # plus the 20 extra seeds of 2×768.
    assert table["run"].nunique() == 30 * 5 + 20


@needs_published
def test_figure5_grid_lines_and_epochs(table):
    fig = figures.figure_epochs(table)
    axes = data_axes(fig)
    grid = {_cell(ax): ax for ax in axes}
    assert sorted(grid) == [(0, 0), (0, 1), (1, 0), (1, 1)]  # rows: β; columns: CDNV, loss
    assert [grid[r, 0].get_title() for r in (0, 1)] == ["β = 0.0005", "β = 0.1"]
    assert grid[0, 0].get_yscale() == "log" and grid[0, 1].get_yscale() == "linear"
    assert "Eq. 4" in grid[0, 0].get_ylabel().replace("\u00a0", " ")
    for ax in axes:
        assert len(ax.get_lines()) == 30  # one per width × depth; the 21 seeds make one
    expected = {0: {1, 3, 6, 10}, 1: {1, 6, 10}}
    for (r, _), ax in grid.items():
        xs = set(np.concatenate([ln.get_xdata() for ln in ax.get_lines()]).tolist())
        assert xs == expected[r]
    assert list(grid[1, 0].get_xticks()) == [1, 3, 6, 10]


def _cell(ax):
    spec = ax.get_subplotspec()
    return spec.rowspan.start, spec.colspan.start


@needs_published
def test_figure5_plots_the_table_values(table):
    fig = figures.figure_epochs(table)
    grid = {_cell(ax): ax for ax in data_axes(fig)}
    cdnv, loss = line(grid[1, 0], "2x768"), line(grid[1, 1], "2x768")  # β = 0.1
    assert list(cdnv.get_xdata()) == [1, 6, 10]
    at6 = model(table, "02x0768_10L@5")
    assert cdnv.get_ydata()[1] == pytest.approx(at6["nc1_cdnv"], rel=1e-12)
    assert loss.get_ydata()[1] == pytest.approx(at6["val_loss"], rel=1e-12)
    assert cdnv.get_ydata()[2] == pytest.approx(model(table, "02x0768_10L@9")["nc1_cdnv"])
    # β = 0.0005, epoch 1: the mean of the 21 seeds of Table 1, not one of them.
    seeds = table[table["model"].isin(published.TABLE1_MODELS)]
    first = line(grid[0, 0], "2x768")
    assert list(first.get_xdata()) == [1, 3, 6, 10]
    assert first.get_ydata()[0] == pytest.approx(seeds["nc1_cdnv"].mean(), rel=1e-12)
    assert first.get_ydata()[0] != pytest.approx(model(table, "02x0768_01d@0")["nc1_cdnv"])
    assert "21 models" in fig.texts[-1].get_text()


@needs_published
def test_figure5_needs_two_epochs_per_architecture(table):
    assert figures.figure_epochs(table[table["epochs"] == 10]) is None
    assert figures.figure_training(table[table["epochs"] == 10]) is None
    one = synthetic_table()
    assert figures.figure_epochs(one[one["epochs"] == 1]) is None
    # One architecture at two epochs is enough for a line; a β with none gets no row.
    two = table[(table["epochs"] == 10) | (table["model"] == "01x0064_10L@5")]
    fig = figures.figure_epochs(two)
    assert [ax.get_title() for ax in data_axes(fig)] == ["β = 0.1", "β = 0.1"]
    assert [len(ax.get_lines()) for ax in data_axes(fig)] == [1, 1]


@needs_published
def test_training_view_one_line_per_run(table):
    fig = figures.figure_training(table)
    axes = data_axes(fig)
    assert len(axes) == len(figures.TRAINING) + 1 == 8
    for ax in axes:
        assert len(ax.get_lines()) == 60  # 30 architectures × 2 β, each at epochs 6 and 10
        assert {tuple(ln.get_xdata()) for ln in ax.get_lines()} == {(6, 10)}
    assert any(ax.get_label() == "<colorbar>" for ax in fig.axes)  # coloured by size
    first = line(axes[0], "12x1024_10d")
    want = table[table["run"] == "12x1024_10d"].sort_values("epochs")["nc1_cdnv"]
    np.testing.assert_allclose(first.get_ydata(), want.to_numpy(), rtol=1e-12)
    assert "60 runs" in fig.get_suptitle()


@needs_published
def test_runs_without_a_run_column(table):
    old = table.drop(columns=["run"])
    assert (figures.run_of(old) == table["run"]).all()  # the id without @k
    renamed = old.assign(model=[f"m{i}" for i in range(len(old))])
    runs = figures.run_of(renamed)  # identity, with the schedule
    assert runs.nunique() == table["run"].nunique()  # 01d (seed 42) is not 01d00 (seed 0)
    assert panels(figures.figure_training(renamed)) == 8
    # Without the schedule, runs cannot be told apart: no training view.
    assert figures.figure_training(renamed.drop(columns=["schedule_epochs"])) is None


@needs_published
def test_report_has_both_training_sections(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["analyze", "--published", str(PUBLISHED), "--out", str(out), "--permutations", "100"]
    assert main(args) == 0
    # The two figures of these sections (all of analyze --figures take a minute to draw);
    # from results.csv, so that `run` survives the round trip through the CSV.
    results = pd.read_csv(out / "results.csv")
    assert results["run"].nunique() == 170
    figures.save(figures.figure_epochs(results), out / "figures" / "fig5_epochs")
    figures.save(figures.figure_training(results), out / "figures" / "training")
    assert main(["report", str(out)]) == 0
    capsys.readouterr()
    assert (out / "figures" / "fig5_epochs.svg").is_file()
    page = (out / "report.html").read_text()
    fig5 = page.index("<h3>Figure 5: collapse over training</h3>")
    training = page.index("<h3>Training</h3>")
    assert fig5 < training
    assert page[fig5:training].count("<img alt='fig5_epochs'") == 1
    assert "different schedule lengths" in page[fig5:training]
    assert page.count("<img alt='training'") == 1


@needs_published
def test_training_runs_of_unknown_size_are_grey(table):
    unknown = table.assign(n_params=table["n_params"].where(table["width"] != 64))
    ax = data_axes(figures.figure_training(unknown, metrics=("nc1_cdnv",)))[0]
    assert line(ax, "01x0064_10d").get_color() == "0.5"  # not a transparent NaN colour
    assert line(ax, "01x0128_10d").get_color() != "0.5"
    assert line(ax, "01x0128_10L").get_linestyle() == "--"  # β = 0.1
