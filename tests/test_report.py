"""report: one self-contained HTML page from an analyze output dir."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pandas as pd
import pytest

from lingcollapse.analysis.figures import make_figures
from lingcollapse.analysis.report import _json_script, _num
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


# ---------------------------------------------------------------- the interactive parts

V, D = 40, 6  # vocabulary and width of the synthetic runs' stats


def swept_dir(tmp_path, capsys, models: int = 3):
    """A sweep-like dir: run dirs (metrics, classes.parquet, train stats, log.jsonl, one
    with an inner layer) below it, analyzed into it."""
    import torch
    from safetensors.torch import save_file

    rng = np.random.default_rng(1)
    table = synthetic_table().head(models)
    root = tmp_path / "sweep"
    for i, (_, row) in enumerate(table.iterrows()):
        metrics = {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        metrics.update(min_count=2, dim=D)
        run = write_run(root / "runs", f"run{i}", metrics, {"lr": 1e-3})
        counts = rng.integers(0, 30, size=V)
        counts[:3] = [0, 1, 50]  # an absent class, one below min_count
        means = rng.normal(size=(V, D))
        ids = np.flatnonzero(counts >= 2)
        classes = pd.DataFrame(
            {
                "token_id": ids,
                "token": [f" t{j}" if j % 2 else f"T{j}" for j in ids],
                "count": counts[ids],
                "sigma2": rng.uniform(0.5, 2, size=ids.size),
                "log_norm": rng.normal(size=ids.size),
                "cdnv_mean": rng.uniform(size=ids.size),
                "val_count": rng.integers(0, 9, size=ids.size),
                "agreement_rate": rng.uniform(size=ids.size),
            }
        )
        classes.to_parquet(run / "classes.parquet")
        (run / "stats").mkdir()
        tensors = {"counts": torch.tensor(counts, dtype=torch.int64), "means": torch.tensor(means)}
        save_file(tensors, str(run / "stats" / "train.safetensors"))
        log = [
            {"step": 50, "epoch": 0, "loss": 4.0 - i, "lr": 1e-3},  # the older format
            {"step": 100, "epoch": 1, "val_loss": 3.5 - i, "val_acc": 0.3},
            "{cut off",
            {"step": 100, "epoch": 1.0, "final": True, "val_loss": 3.5 - i},  # the run's end
        ]
        lines = [r if isinstance(r, str) else json.dumps(r) for r in log]
        (run / "log.jsonl").write_text("\n".join(lines) + "\n")
    layer = dict(json.loads((root / "runs" / "run0" / "metrics.json").read_text()), nc1_cdnv=9.0)
    (root / "runs" / "run0" / "metrics.layer01.json").write_text(json.dumps(layer))
    assert main(["analyze", str(root / "runs"), "--permutations", "50", "--out", str(root)]) == 0
    capsys.readouterr()
    return root, table


def embedded(page: str, element_id: str):
    tag = f"<script type='application/json' id='{element_id}'>"
    match = re.search(rf"{tag}(.*?)</script>", page, re.S)
    assert match, element_id
    return json.loads(match.group(1))


def test_the_token_explorer_embeds_the_classes_and_their_neighbours(tmp_path, capsys):
    """The embedded rows are the model's most frequent classes from classes.parquet;
    neighbours equal a float64 brute force over the embedded classes' means."""
    root, table = swept_dir(tmp_path, capsys)
    assert main(["report", str(root), "--max-tokens", "12", "--neighbours", "4"]) == 0
    page = (root / "report.html").read_text()
    index = embedded(page, "lc-token-index")
    assert [m["model"] for m in index] == table["model"].tolist()
    from safetensors.numpy import load_file

    for entry in index:
        view = embedded(page, entry["id"])
        run = root / "runs" / f"run{table['model'].tolist().index(entry['model'])}"
        classes = pd.read_parquet(run / "classes.parquet")
        top = classes.sort_values(["count", "token_id"], ascending=[False, True]).head(12)
        assert view["total"] == len(classes) and view["run"] == str(run.relative_to(root))
        assert view["columns"][:2] == ["token", "token_id"]
        assert view["data"]["token_id"] == top["token_id"].tolist()
        assert view["data"]["token"] == top["token"].tolist()
        assert view["data"]["count"] == top["count"].tolist()
        for col in ("sigma2", "log_norm", "cdnv_mean", "agreement_rate"):
            np.testing.assert_allclose(view["data"][col], top[col], rtol=1e-5)
        np.testing.assert_allclose(
            view["data"]["norm_scaled"], np.exp(2 * top["log_norm"]) / np.sqrt(D), rtol=1e-5
        )
        stats = load_file(str(run / "stats" / "train.safetensors"))
        mu = stats["means"][top["token_id"].to_numpy()]
        centre = stats["means"][stats["counts"] >= 2].mean(axis=0)
        z = mu - centre
        for c in range(len(mu)):
            dist = np.sqrt(((mu - mu[c]) ** 2).sum(axis=1))
            dist[c] = np.inf
            assert view["nearest"][c] == np.argsort(dist, kind="stable")[:4].tolist()
            np.testing.assert_allclose(view["nearest_value"][c], np.sort(dist)[:4], rtol=1e-5)
            cos = z @ z[c] / (np.linalg.norm(z, axis=1) * np.linalg.norm(z[c]))
            cos[c] = -np.inf
            assert view["interfering"][c] == np.argsort(-cos, kind="stable")[:4].tolist()
            np.testing.assert_allclose(view["interfering_value"][c], -np.sort(-cos)[:4], rtol=1e-5)
        # Tables 4–5 over all classes, as `inspect --top/--bottom` ranks them
        top3 = classes.nlargest(10, "sigma2")["token_id"].tolist()
        at = view["columns"].index("token_id")
        assert [r[at] for r in view["extremes"]["sigma2"]["top"]] == top3
        low = classes.nsmallest(10, "agreement_rate")["token_id"].tolist()
        assert [r[at] for r in view["extremes"]["agreement_rate"]["bottom"]] == low
        mean = classes["count"].mean()
        assert view["average"][view["columns"].index("count")] == pytest.approx(mean, rel=1e-5)
    assert "the 12 most frequent classes of each model" in page


def test_nearest_and_interfering_with_few_classes_and_a_mean_at_the_centre():
    from lingcollapse.analysis.explore import nearest_and_interfering

    mu = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    (near, dist), (far, cos) = nearest_and_interfering(mu, np.zeros(2), k=5)
    assert near.tolist() == [[1, 2], [0, 2], [0, 1]]  # k capped at E − 1
    np.testing.assert_allclose(dist, [[1, 2], [1, np.sqrt(5)], [2, np.sqrt(5)]])
    assert far[0].tolist() == [-1, -1] and np.isnan(cos[0]).all()  # no direction
    assert far[1].tolist() == [2, -1] and cos[1, 0] == 0.0  # the centred one left out


def test_training_curves_layers_and_downloads_are_embedded(tmp_path, capsys):
    root, table = swept_dir(tmp_path, capsys)
    assert main(["report", str(root)]) == 0
    page = (root / "report.html").read_text()
    curves = embedded(page, "lc-curves-data")
    assert [c["run"] for c in curves] == [f"runs/run{i}" for i in range(3)]
    first = curves[0]
    assert first["models"] == [table["model"].iloc[0]]
    # the old format's epoch index 0 becomes the fractional epoch step / (steps per epoch)
    assert first["train"] == [[50, 0.5, 4.0]] and first["eval"] == [[100, 1.0, 3.5]]
    layers = embedded(page, "lc-layers-data")
    assert "nc1_cdnv" in {m["name"] for m in layers["metrics"]}
    rows = [dict(zip(layers["columns"], r, strict=True)) for r in layers["rows"]]
    assert (rows[0]["layer_index"], rows[0]["nc1_cdnv"]) == (1, 9.0)
    for name in ("results.csv", "correlations.json"):
        link = re.search(rf"download='{re.escape(name)}' href='data:[^;]+;base64,([^']+)'", page)
        assert base64.b64decode(link.group(1)) == (root / name).read_bytes()
    assert not EXTERNAL.search(page) and "@import" not in page
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", page)


def test_points_carry_their_values_and_rows_their_model(tmp_path, capsys):
    """Each point of Figure 1 names its model and its coordinates (the model's values)."""
    out, table = analyzed_dir(tmp_path, capsys)
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    start = page.index("aria-label='fig1_headline'")
    svg = page[start : page.index("</svg>", start)]
    values = table.set_index("model")
    groups = re.findall(r'data-xlabel="([^"]*)" data-ylabel="([^"]*)"(.*?)</g>\s*</g>', svg, re.S)
    assert len(groups) == 4 and all(y == "Validation loss" or "loss" in y for _, y, _ in groups)
    points = re.findall(r'data-model="([^"]+)" data-x="([^"]+)" data-y="([^"]+)"', svg)
    assert len(points) == 4 * len(table)
    for model, _, y in points:
        assert float(y) == pytest.approx(values.loc[model, "val_loss"], rel=1e-5)
    first = next(p for p in points if p[0] == table["model"].iloc[0])
    assert float(first[1]) == pytest.approx(table["nc1_cdnv"].iloc[0], rel=1e-5)
    for model in table["model"]:
        assert f"<tr data-model='{model}'>" in page
    assert "<table class='lc-sort results'>" in page and "<thead>" in page


def test_the_explorer_can_be_left_out_and_bad_limits_are_user_errors(tmp_path, capsys):
    root, _ = swept_dir(tmp_path, capsys)
    assert main(["report", str(root), "--max-tokens", "0"]) == 0
    page = (root / "report.html").read_text()
    assert "id='lc-token-index'" not in page and "id='lc-curves-data'" in page
    for args in (["--max-tokens", "-1"], ["--neighbours", "-2"], ["--runs", str(tmp_path / "x")]):
        assert main(["report", str(root), *args]) == 2
        assert capsys.readouterr().err.startswith("error: ")


def test_runs_found_elsewhere_with_runs(tmp_path, capsys):
    """analyze --out elsewhere: the explorer finds the run dirs given by --runs."""
    root, table = swept_dir(tmp_path, capsys)
    out = tmp_path / "elsewhere"
    assert main(["analyze", str(root / "runs"), "--permutations", "20", "--out", str(out)]) == 0
    assert main(["report", str(out)]) == 0
    assert "id='lc-token-index'" not in (out / "report.html").read_text()
    assert main(["report", str(out), "--runs", str(root / "runs")]) == 0
    index = embedded((out / "report.html").read_text(), "lc-token-index")
    assert [m["model"] for m in index] == table["model"].tolist()


def test_cli_defaults_match_the_library():
    from lingcollapse.analysis import explore
    from lingcollapse.cli import report

    assert (report.MAX_TOKENS, report.NEIGHBOURS) == (explore.MAX_TOKENS, explore.NEIGHBOURS)


# ---------------------------------------------------------------- histograms, layers, logs


def _hist_reference(values: pd.Series, bins: int = 40):
    finite = values.to_numpy(np.float64)
    finite = finite[np.isfinite(finite)]
    counts, edges = np.histogram(finite, bins=bins)
    positive = finite[finite > 0]
    log = None
    if positive.size and positive.max() > positive.min():
        log = np.histogram(positive, bins=np.geomspace(positive.min(), positive.max(), bins + 1))
    return counts, edges, log, int(finite.size - positive.size)


def _check_histograms(view: dict, classes: pd.DataFrame) -> None:
    """The embedded histograms equal numpy.histogram over every class of the table."""
    from lingcollapse.analysis.explore import HIST_COLUMNS

    assert list(view["hist"]) == [c for c in HIST_COLUMNS if c in classes.columns]
    for column, hist in view["hist"].items():
        counts, edges, log, nonpositive = _hist_reference(classes[column])
        assert hist["counts"] == counts.tolist() and len(hist["counts"]) == 40
        np.testing.assert_allclose(hist["edges"], edges, rtol=1e-12)
        assert sum(hist["counts"]) + hist["missing"] == len(classes)
        if log is None:
            assert "log_counts" not in hist
        else:
            assert hist["log_counts"] == log[0].tolist() and hist["nonpositive"] == nonpositive
            np.testing.assert_allclose(hist["log_edges"], log[1], rtol=1e-12)


def test_histograms_cover_every_class_not_only_the_embedded(tmp_path, capsys):
    root, _ = swept_dir(tmp_path, capsys)
    classes = pd.read_parquet(root / "runs" / "run0" / "classes.parquet")
    classes.loc[3, "agreement_rate"] = np.nan  # a class without validation samples
    classes.to_parquet(root / "runs" / "run0" / "classes.parquet")
    assert main(["report", str(root), "--max-tokens", "5"]) == 0
    page = (root / "report.html").read_text()
    for i, entry in enumerate(embedded(page, "lc-token-index")):
        view = embedded(page, entry["id"])
        classes = pd.read_parquet(root / "runs" / f"run{i}" / "classes.parquet")
        assert len(view["data"]["token_id"]) == 5 < len(classes) == view["total"]
        _check_histograms(view, classes)
        assert view["hist"]["count"]["nonpositive"] == 0
        assert view["hist"]["log_norm"]["nonpositive"] == (classes["log_norm"] <= 0).sum() > 0
    first = embedded(page, "lc-tokens-0")["hist"]
    assert first["agreement_rate"]["missing"] == 1 and first["count"]["missing"] == 0
    assert "Histograms</b> of a column are over <i>all</i> the model's classes" in page
    assert "<b>Layers</b>" not in page  # no run was measured layer-wise


def test_histograms_of_a_constant_or_empty_column():
    from lingcollapse.analysis.explore import histograms

    classes = pd.DataFrame({"count": [5, 5, 5], "sigma2": [np.nan] * 3, "dot": [0.0, 1.0, 2.0]})
    hists = histograms(classes, bins=4)
    assert "sigma2" not in hists  # no value to draw
    assert hists["count"]["counts"].tolist() == [0, 0, 3, 0] and "log_counts" not in hists["count"]
    assert hists["dot"]["log_counts"].sum() == 2 and hists["dot"]["nonpositive"] == 1


def add_layer(run, layer: int, seed: int) -> pd.DataFrame:
    """An inner layer of a swept_dir run: its classes table (other values, same classes)
    and its train stats (same counts, other means), as `measure` writes them."""
    import torch
    from safetensors.numpy import load_file
    from safetensors.torch import save_file

    rng = np.random.default_rng(seed)
    classes = pd.read_parquet(run / "classes.parquet")
    for column in ("sigma2", "log_norm", "cdnv_mean", "agreement_rate"):
        classes[column] = rng.permutation(classes[column].to_numpy())
    classes["sigma2"] *= 1 + layer  # inner layers are not collapsed alike
    classes.to_parquet(run / f"classes.layer{layer:02d}.parquet")
    counts = load_file(str(run / "stats" / "train.safetensors"))["counts"]
    means = rng.normal(size=(len(counts), D))
    tensors = {"counts": torch.tensor(counts), "means": torch.tensor(means)}
    save_file(tensors, str(run / "stats" / f"train.layer{layer:02d}.safetensors"))
    return classes


def _script_chars(page: str, element_id: str) -> int:
    tag = f"<script type='application/json' id='{element_id}'>"
    start = page.index(tag)
    return page.index("</script>", start) + len("</script>") - start


def test_the_explorer_offers_each_measured_layer(tmp_path, capsys, monkeypatch):
    """Inner layers carry their own rows, neighbours and histograms while the budget of
    characters allows; from the first that would pass it, histograms only."""
    from safetensors.numpy import load_file

    from lingcollapse.analysis import report

    root, _ = swept_dir(tmp_path, capsys)
    run = root / "runs" / "run0"
    inner = {layer: add_layer(run, layer, seed=layer) for layer in (0, 1)}
    assert main(["report", str(root), "--max-tokens", "8", "--neighbours", "3"]) == 0
    page = (root / "report.html").read_text()
    index = embedded(page, "lc-token-index")
    assert index[0]["layers"] == [
        {"layer": 0, "id": "lc-tokens-0-l0", "full": True},
        {"layer": 1, "id": "lc-tokens-0-l1", "full": True},
        {"layer": None, "id": "lc-tokens-0", "full": True},  # the last, the default
    ]
    assert index[1]["layers"] == [{"layer": None, "id": "lc-tokens-1", "full": True}]
    assert embedded(page, "lc-tokens-0")["layer"] is None
    for layer, classes in inner.items():
        view = embedded(page, f"lc-tokens-0-l{layer}")
        assert view["layer"] == layer and view["run"] == "runs/run0"
        top = classes.sort_values(["count", "token_id"], ascending=[False, True]).head(8)
        assert view["data"]["token_id"] == top["token_id"].tolist()
        np.testing.assert_allclose(view["data"]["sigma2"], top["sigma2"], rtol=1e-5)
        _check_histograms(view, classes)
        mu = load_file(str(run / "stats" / f"train.layer{layer:02d}.safetensors"))["means"]
        mu = mu[top["token_id"].to_numpy()]
        dist = np.sqrt(((mu - mu[0]) ** 2).sum(axis=1))
        dist[0] = np.inf
        assert view["nearest"][0] == np.argsort(dist, kind="stable")[:3].tolist()
    assert "<b>Layers</b>" in page and "histograms only" in page
    # a budget that holds layer 0's data but not layer 1's: layer 1 gets histograms only
    monkeypatch.setattr(report, "INNER_LAYER_CHARS", _script_chars(page, "lc-tokens-0-l0") + 10)
    assert main(["report", str(root), "--max-tokens", "8", "--neighbours", "3"]) == 0
    page = (root / "report.html").read_text()
    assert [entry["full"] for entry in embedded(page, "lc-token-index")[0]["layers"]] == [
        True, False, True,
    ]  # fmt: skip
    only = embedded(page, "lc-tokens-0-l1")
    assert only["histOnly"] and "data" not in only and "nearest" not in only
    assert only["total"] == len(inner[1]) and only["layer"] == 1
    _check_histograms(only, inner[1])


def test_read_log_skips_the_final_row(tmp_path):
    """train/loop.py ends a log with a row repeating the last evaluation ("final"):
    it is not a second point."""
    from lingcollapse.analysis.explore import read_log

    rows = [
        {"time": 1.0, "step": 50, "epoch": 0.5, "loss": 4.0, "lr": 1e-3, "grad_norm": 1.0},
        {"time": 2.0, "step": 100, "epoch": 1.0, "loss": 3.8, "lr": 5e-4},
        {"time": 2.5, "step": 100, "epoch": 1.0, "val_loss": 3.6, "val_acc": 0.2},
        {"time": 3.0, "step": 100, "epoch": 1.0, "final": True, "val_loss": 3.6, "loss": 3.8},
    ]
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    train, evaluation = read_log(log)
    assert train == [(50.0, 0.5, 4.0), (100.0, 1.0, 3.8)]
    assert evaluation == [(100.0, 1.0, 3.6)]


def test_embedded_json_cannot_end_its_script_and_reads_back_exactly():
    """A token's text may be anything: ``</script>``, ``<!--`` and ``<`` must neither close
    nor comment out the data element, and must parse back to the same strings."""
    data = {"tokens": ["</script><script>alert(1)</script>", "<!--", "a<b", "é ✓"]}
    element = _json_script("x", data)
    body = element.removeprefix("<script type='application/json' id='x'>")
    body = body.removesuffix("</script>")
    assert "<" not in body
    assert json.loads(body) == data
