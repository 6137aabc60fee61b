"""report: one self-contained HTML page from an analyze output dir."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from lingcollapse.analysis.figures import make_figures
from lingcollapse.analysis.report import _num
from lingcollapse.cli import main
from test_analysis import write_run
from test_analysis_figures import synthetic_table

EXTERNAL = re.compile(r"""(src|href)\s*=\s*['"]?\s*(https?:)?//""", re.I)


def analyzed_dir(tmp_path, capsys):
    """analyze --out over run dirs (with configs); figures drawn for one scaling metric."""
    table = synthetic_table()
    for _, row in table.iterrows():
        metrics = {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        config = {"model": {"width": int(row["width"])}, "lr": 1e-3}
        write_run(tmp_path / "runs", str(row["model"]), metrics, config)
    out = tmp_path / "out"
    code = main(["analyze", str(tmp_path / "runs"), "--permutations", "200", "--out", str(out)])
    capsys.readouterr()
    assert code == 0
    make_figures(table, out / "figures", scaling=("nc1_cdnv",))
    return out, table


def test_report_is_self_contained_and_has_the_tables(tmp_path, capsys):
    out, table = analyzed_dir(tmp_path, capsys)
    assert main(["report", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out / "report.html")
    page = (out / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert not EXTERNAL.search(page)
    assert "<link" not in page
    scripts = re.findall(r"<script\b([^>]*)>", page)
    assert scripts and all("src" not in attrs for attrs in scripts)  # all inline
    corr = json.loads((out / "correlations.json").read_text())
    for name, values in corr["metrics"].items():
        assert f"<code>{name}</code>" in page
        assert f"<td>{_num(values['r2'], 6)}</td>" in page
    for model in table["model"]:
        assert f">{model}<" in page
    # fig 1–3, 5, 20–22, 27–28, seeds, weight decay, 2 scaling
    pngs, svgs = page.count("src='data:image/png;base64,"), page.count("<svg role='img'")
    assert (pngs, svgs) == (3, 10)  # the scatter figures inline, hover titles and all
    assert "<h3>Figure 5: collapse over training</h3>" in page
    assert "<h3>Training</h3>" not in page  # no run was measured at two epochs
    assert "Table 1: a fixed architecture, 4 seeds" in page
    assert "<h2>Findings: which of the paper's claims hold here</h2>" in page
    assert "NC1 (CDNV) is stronger with β = 0.1 than with β = 0.0005" in page
    assert "Run configurations" in page and "&quot;lr&quot;: 0.001" in page
    assert "↓" in page and "Eq. 4" in page


def test_report_draws_missing_figures(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    synthetic_table()[["model", "val_loss", "nc1_cdnv", "nc4_agreement"]].to_csv(
        out / "results.csv", index=False
    )
    assert main(["report", str(out)]) == 0  # no correlations.json either: computed
    assert (out / "figures" / "fig1_headline.png").stat().st_size > 1000
    page = (out / "report.html").read_text()
    assert page.count("aria-label='fig1_headline'") == 1 and "nc4_agreement" in page
    assert "Figure 5" not in page  # no epochs column: neither training section


@pytest.mark.parametrize("make", [False, True])
def test_report_bad_dir(tmp_path, capsys, make):
    target = tmp_path / "empty"
    if make:
        target.mkdir()
    assert main(["report", str(target)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")


def test_points_carry_their_model_in_the_svg_and_the_page_inlines_it(tmp_path, capsys):
    """Hovering over a point names its model: each scatter marker of the SVG has a
    <title>; the report inlines those SVGs with their ids prefixed per figure."""
    out, table = analyzed_dir(tmp_path, capsys)
    svg = (out / "figures" / "fig1_headline.svg").read_text()
    titles = re.findall(r"<title>([^<]*)</title></use>", svg)
    assert len(titles) == 4 * len(table)  # four panels, every model once in each
    assert set(titles) == set(table["model"])
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "aria-label='fig1_headline'" in page and "<?xml" not in page
    ids = re.findall(r"""\bid="([^"]+)\"""", page)
    assert len(ids) == len(set(ids))  # figures' markers and clip paths never collide
    for ref in re.findall(r'xlink:href="#([^"]+)"', page):
        assert ref in ids


def test_the_page_names_its_data_and_tells_runs_apart(tmp_path, capsys):
    """The Data card shows what each group of models was trained and measured on; two
    runs of one name with other settings keep apart in the table."""
    runs = tmp_path / "runs"
    base = {"val_loss": 2.0, "nc1_cdnv": 0.1, "n_sequences": 40, "seq_len": 24, "vocab_size": 97}
    for i, lr in enumerate((1e-3, 2e-3, 2e-3, 3e-3)):
        metrics = {**base, "model": "same" if i < 2 else f"m{i}", "val_loss": 2.0 + i}
        metrics["nc1_cdnv"] = 0.1 * (1 + i)
        write_run(runs / f"r{i}", "run", metrics, {"lr": lr, "batch_size": 8})
    out = tmp_path / "out"
    assert main(["analyze", str(runs), "--permutations", "50", "--out", str(out)]) == 0
    capsys.readouterr()
    models = set(pd.read_csv(out / "results.csv")["model"])
    assert models == {"same [lr=0.001]", "same [lr=0.002]", "m2", "m3"}
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "<h2>Data</h2>" in page and "S sequences" in page and ">learning rate<" in page
