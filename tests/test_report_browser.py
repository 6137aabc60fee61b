"""The report's interactions in headless Chromium (Playwright): sorting, filtering,
hovering a point, searching a token, the downloads; no console error, nothing fetched.

Skips when Playwright for Python or /usr/bin/chromium is absent. Screenshots before and
after a sort, a hover and a token search go to $LINGCOLLAPSE_SCREENSHOTS (else tmp).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from pathlib import Path

import pandas as pd
import pytest

from lingcollapse.cli import main
from test_report import add_layer, swept_dir

pytest.importorskip("playwright.sync_api")
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "check_report.py"
if not Path("/usr/bin/chromium").is_file():
    pytest.skip("no Chromium at /usr/bin/chromium", allow_module_level=True)


def _checker():
    spec = importlib.util.spec_from_file_location("check_report", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_report_works_in_a_browser(tmp_path, capsys):
    root, table = swept_dir(tmp_path, capsys)
    layer1 = add_layer(root / "runs" / "run0", 1, seed=7)
    assert main(["report", str(root), "--neighbours", "5"]) == 0
    capsys.readouterr()
    shots = Path(os.environ.get("LINGCOLLAPSE_SCREENSHOTS") or tmp_path / "shots")
    check = _checker()
    seen = check.drive(root / "report.html", shots)
    assert check.problems(seen) == []
    assert seen["errors"] == [] and seen["refused"] == []
    results = pd.read_csv(root / "results.csv")
    # sorting: the val_loss column ascending, then descending
    assert seen["order_before"] == results["model"].tolist()
    ascending = results.sort_values("val_loss", kind="stable")["model"].tolist()
    assert seen["order_ascending"] == ascending
    assert seen["order_descending"] == ascending[::-1]
    assert seen["filtered"] == [results["model"].iloc[-1]]
    # hover: the tooltip names the model and its values; its row and points light up
    model = seen["hover_model"]
    assert model in set(table["model"]) and seen["tooltip"].startswith(model)
    loss = results.set_index("model").loc[model, "val_loss"]
    assert re.search(rf"loss[^:]*: {float(f'{loss:.4g}'):g}\b", seen["tooltip"])
    assert seen["highlighted_rows"] == 1 and seen["highlighted_points"] >= 4
    # the token search: the third most frequent class of the first model and its row
    run = root / "runs" / "run0"
    classes = pd.read_parquet(run / "classes.parquet")
    top = classes.sort_values(["count", "token_id"], ascending=[False, True])
    row = top.iloc[2]
    assert seen["token"] == row["token"]
    assert f"(id {row['token_id']})" in seen["token_heading"]
    assert seen["token_facts"]["count"] == f"{row['count']:,}"
    page = (root / "report.html").read_text()
    view = json.loads(re.search(r"id='lc-tokens-0'>(.*?)</script>", page, re.S).group(1))
    ids = view["data"]["token_id"]
    assert seen["token_nearest"] == [ids[j] for j in view["nearest"][2]]
    assert seen["token_interfering"] == [ids[j] for j in view["interfering"][2]]
    assert len(seen["token_nearest"]) == 5
    # the histogram of σ² over all classes, 40 bars, the searched token marked at its value
    assert seen["hist_default"] == ["count", True]  # counts on a log axis first
    hist = view["hist"]["sigma2"]
    assert seen["hist_bars"] == 40 and seen["hist_counts"] == hist["counts"]
    assert seen["hist_marks"] == 1
    assert seen["hist_mark_value"] == pytest.approx(row["sigma2"], rel=1e-5)
    assert f"over all {len(classes)} classes" in seen["hist_caption"]
    fullest = max(hist["counts"])
    assert seen["hist_tooltip"].endswith(f"{fullest} classes") and "σ² in [" in seen["hist_tooltip"]
    # an inner layer: its own values of the same token, its own histogram
    assert seen["layer_options"] == ["layer 1 (block 1)", "last (input of the output layer)"]
    assert "layer 1 (block 1)" in seen["layer_info"]
    assert f"(id {row['token_id']})" in seen["layer_heading"]
    assert "layer 1" in seen["layer_heading"] and "layer 1" in seen["layer_hist_caption"]
    assert f"over all {len(layer1)} classes" in seen["layer_hist_caption"]
    inner_sigma2 = layer1.set_index("token_id").loc[row["token_id"], "sigma2"]
    assert f"({float(f'{inner_sigma2:.4g}'):g})" in seen["layer_hist_caption"]
    # the downloads carry the files' bytes
    assert seen["downloads"] == {
        "results.csv": (root / "results.csv").read_bytes(),
        "correlations.json": (root / "correlations.json").read_bytes(),
    }
    assert seen["charts"] >= 3  # two training curves and the layer view
    names = {Path(p).name for p in seen["shots"]}
    assert {"2-before-sort.png", "3-after-sort.png", "4-hover.png"} <= names
    assert {"5-before-token-search.png", "6-after-token-search.png"} <= names
    assert {"7-histogram.png", "8-layer.png"} <= names
    assert all(Path(p).stat().st_size > 10_000 for p in seen["shots"])
