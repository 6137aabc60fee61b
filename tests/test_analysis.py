"""analyze: gathering runs, correlations (§3.8), the published adapter, Table 1."""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lingcollapse.analysis import published
from lingcollapse.analysis.correlation import correlate, pearson_rows, permutation_pvalues
from lingcollapse.analysis.job import AnalyzeConfig, analyze
from lingcollapse.analysis.table import gather
from lingcollapse.cli import main
from lingcollapse.errors import UserError

PUBLISHED = Path(__file__).resolve().parents[2] / "shared/data/published/lc-2024_05_18.csv"
LATER = PUBLISHED.with_name("lc-2024_10_24.csv")
needs_published = pytest.mark.skipif(not PUBLISHED.is_file(), reason="published data absent")

# The paper's Table 1: (our column, R², p-value).
TABLE1 = (
    ("nc1_cdnv", 0.192011, 0.0485),
    ("nc2_equinorm_cov", 0.026174, 0.4870),
    ("nc2_equiangular_cov", 0.218574, 0.0317),
    ("gnc2_uniformity_uncentred_cov", 0.487935, 0.0002),  # their kernel: uncentred means
    ("nc3_duality_mean", 0.322210, 0.0063),
    ("unc3_duality_cov", 0.000036, 0.9784),
    ("nc4_agreement", 0.490278, 0.0001),
)


def small_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "model": ["a", "b", "c", "d", "e"],
            "val_loss": [1.0, 2.0, 3.0, 4.0, 5.0],
            "nc1_cdnv": [2.0, 4.0, 6.0, 8.0, 10.0],  # r = +1
            "nc4_agreement": [5.0, 4.0, 3.0, 2.0, 1.0],  # r = −1
            "nc3_duality_mean": [1.0, 2.0, 1.0, 2.0, 1.0],  # r = 0 (hand-computed)
            "unc3_duality_cov": [1.0, 3.0, 2.0, 5.0, 4.0],  # r = 0.8
        }
    )


def test_pearson_by_hand():
    corr = correlate(small_table(), permutations=200, seed=1)
    got = {k: (v.pearson_r, v.r2) for k, v in corr.metrics.items()}
    assert got["nc1_cdnv"] == pytest.approx((1.0, 1.0))
    assert got["nc4_agreement"] == pytest.approx((-1.0, 1.0))
    assert got["nc3_duality_mean"] == pytest.approx((0.0, 0.0), abs=1e-12)
    # x − x̄ = (−2, 0, −1, 2, 1), y − ȳ = (−2, −1, 0, 1, 2): Σ = 8, √(10·10) = 10.
    assert got["unc3_duality_cov"] == pytest.approx((0.8, 0.64))
    assert corr.n_models == 5
    # 5 models: 5! = 120 ≤ 200 resamples, so the test is exact; r = ±1 is reached only by
    # the identity and (for the two-sided doubling) p = 2/120.
    assert corr.metrics["nc1_cdnv"].p_value == pytest.approx(2 / 120)
    assert corr.metrics["nc3_duality_mean"].p_value == pytest.approx(1.0)


def _reference_pvalue(x, y, perms) -> float:
    """Explicit loop: r of each permuted x, then scipy's two-sided rule with the +1."""

    def r(a):
        ma, mb = sum(a) / len(a), sum(y) / len(y)
        num = sum((ai - ma) * (bi - mb) for ai, bi in zip(a, y, strict=True))
        den = math.sqrt(sum((ai - ma) ** 2 for ai in a) * sum((bi - mb) ** 2 for bi in y))
        return num / den

    obs = r(list(x))
    null = [r([x[i] for i in perm]) for perm in perms]
    less = (sum(v <= obs for v in null) + 1) / (len(null) + 1)
    greater = (sum(v >= obs for v in null) + 1) / (len(null) + 1)
    return min(2 * min(less, greater), 1.0)


def test_permutation_pvalues_match_a_slow_loop():
    rng = np.random.default_rng(3)
    n, resamples, seed = 9, 3000, 11
    y = rng.normal(size=n)
    x = np.stack([y + rng.normal(scale=s, size=n) for s in (0.3, 1.0, 3.0)])  # (3, n)
    r, p = permutation_pvalues(x, y, resamples, seed)
    # The permutations scipy draws for this seed, recorded by permuting the indices.
    seen = []

    def record(idx, axis):
        idx = np.moveaxis(idx, axis, -1)
        seen.append(idx.reshape(-1, n).astype(int))
        return np.zeros(idx.shape[:-1])

    stats.permutation_test(
        (np.arange(n, dtype=float),),
        record,
        permutation_type="pairings",
        n_resamples=resamples,
        vectorized=True,
        rng=np.random.default_rng(seed),
    )
    perms = np.concatenate(seen[1:])  # the first call is the observed statistic
    assert perms.shape == (resamples, n)
    for i in range(3):
        assert r[i] == pytest.approx(stats.pearsonr(x[i], y).statistic)
        assert p[i] == pytest.approx(_reference_pvalue(x[i], y, perms.tolist()))
    assert p[0] < 0.01 < p[2]


def test_pearson_rows_constant_is_nan():
    x = np.array([[1.0, 1.0, 1.0], [1.0, 2.0, 3.0]])
    r = pearson_rows(x, np.array([3.0, 2.0, 1.0]))
    assert math.isnan(r[0]) and r[1] == pytest.approx(-1.0)


def test_constant_and_partial_columns():
    df = small_table()
    df["nc2_equinorm_cov"] = 7.0
    df["gnc2_uniformity_cov"] = [1.0, np.nan, 2.0, 4.0, 3.0]
    corr = correlate(df, permutations=50)
    assert math.isnan(corr.metrics["nc2_equinorm_cov"].r2)
    assert any("constant" in note for note in corr.notes)
    assert corr.metrics["gnc2_uniformity_cov"].n == 4
    expected = stats.pearsonr([1.0, 2.0, 4.0, 3.0], [1.0, 3.0, 4.0, 5.0]).statistic
    assert corr.metrics["gnc2_uniformity_cov"].pearson_r == pytest.approx(expected)
    js = corr.as_json()
    undefined = js["metrics"]["nc2_equinorm_cov"]
    for key in ("r2", "pearson_r", "p_value", "p_se", "p_min", "r2_plotted"):
        assert undefined[key] is None, key


def test_parse_name():
    assert published.parse_name("02x0768_01d@0") == {
        "depth": 2,
        "width": 768,
        "epochs": 1,
        "weight_decay": 0.0005,
        "seed": 42,  # no digits: the Trainer's default seed
        "schedule_epochs": 1,
        "checkpoint": 0,
    }
    got = published.parse_name("12x1024_10L@5")
    assert (got["depth"], got["width"], got["epochs"], got["weight_decay"]) == (12, 1024, 6, 0.1)
    assert published.parse_name("02x0768_01d17@0")["seed"] == 17
    assert published.parse_name("02x0768_01d00@0")["seed"] == 0
    with pytest.raises(UserError):
        published.parse_name("gpt2")


@needs_published
def test_table1_reproduced_from_published_data():
    """The paper's Table 1: R² to its 6 printed digits, p within Monte Carlo error."""
    table = published.load_published(PUBLISHED)
    seeds = table[table["model"].isin(published.TABLE1_MODELS)]
    assert len(seeds) == 21
    corr = correlate(seeds, permutations=10_000, seed=0)
    for name, r2, p in TABLE1:
        got = corr.metrics[name]
        assert got.r2 == pytest.approx(r2, abs=5e-7), name
        # 10⁴ resamples: standard error √(p(1−p)/10⁴) ≤ 0.005; the paper's smallest
        # p-values (0.0001–0.0002) and ours differ by how two-sided is counted.
        assert abs(got.p_value - p) < 4 * math.sqrt(max(p, 1e-3) * (1 - p) / 1e4) + 1e-3, name


@needs_published
def test_published_conversion_values():
    raw = pd.read_csv(PUBLISHED)
    ours = published.load_published(PUBLISHED)
    assert len(ours) == 230
    row, mine = raw.iloc[0], ours.iloc[0]
    assert mine["nc2_equinorm_cov"] == pytest.approx(row.norms_log_std / row.norms_log_mean)
    # their norms are squared: log ‖z‖² = 2 log ‖z‖
    assert mine["nc2_norm_mean"] == pytest.approx(row.norms_log_mean / 2)
    assert mine["gnc2_uniformity_uncentred_cov"] == pytest.approx(
        row.log_dist_std / row.log_dist_mean
    )
    assert "gnc2_uniformity_cov" not in ours and "dists_mean" not in ours
    assert mine["nc4_agreement"] == pytest.approx(row.matches / (row.matches + row.misses))
    assert mine["val_ppl"] == row.perplex and mine["n_params"] == row.n_params
    assert set(ours["epochs"]) == {1, 3, 6, 10}


def write_run(root: Path, name: str, metrics: dict, config: dict | None = None) -> Path:
    run = root / name
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps(metrics))
    if config is not None:
        (run / "config.json").write_text(json.dumps(config))
    return run


def test_gather_run_dirs_identity_from_config(tmp_path):
    write_run(
        tmp_path / "sweep",
        "r1",
        {"model": "m1", "width": 32, "val_loss": 3.0, "nc1_cdnv": 0.5, "preset": "wu-papyan"},
        {"width": 999, "model": {"depth": 2}, "epochs": 3, "seed": 4},
    )
    write_run(tmp_path / "sweep", "r2", {"val_loss": 2.0, "nc1_cdnv": 0.2})
    got = gather([tmp_path / "sweep"])
    t = got.table.set_index("model")
    assert list(got.table.columns[:7]) == [
        "model",
        "width",
        "depth",
        "n_params",
        "epochs",
        "weight_decay",
        "seed",
    ]
    assert t.loc["m1", "width"] == 32  # metrics.json first
    assert (t.loc["m1", "depth"], t.loc["m1", "epochs"], t.loc["m1", "seed"]) == (2, 3, 4)
    assert "r2" in t.index  # no model key: the dir name
    assert got.configs["m1"]["epochs"] == 3


def run_cli(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_json_and_outputs(tmp_path, capsys):
    table = tmp_path / "t.parquet"
    small_table().to_parquet(table)
    code, out, err = run_cli(
        ["analyze", table, "--permutations", 100, "--seed", 2, "--json", "--out", tmp_path / "o"],
        capsys,
    )
    assert code == 0, err
    js = json.loads(out)
    assert set(js) == {"target", "n_models", "permutations", "seed", "metrics"}
    assert js["target"] == "val_loss" and js["n_models"] == 5
    assert (js["permutations"], js["seed"]) == (100, 2)
    assert set(js["metrics"]["nc1_cdnv"]) == {
        *("r2", "pearson_r", "p_value", "p_se", "p_min", "exact", "r2_plotted", "plotted_as"),
        *("collapse_r", "n"),
    }
    # CDNV falls as loss falls: more collapse (−log CDNV) with lower loss
    assert js["metrics"]["nc1_cdnv"]["collapse_r"] < -0.9
    assert js["metrics"]["unc3_duality_cov"]["r2"] == pytest.approx(0.64)
    assert json.loads((tmp_path / "o/correlations.json").read_text()) == js
    back = pd.read_parquet(tmp_path / "o/results.parquet")
    assert list(back["model"]) == list("abcde")
    assert pd.read_csv(tmp_path / "o/results.csv")["nc1_cdnv"].tolist() == [2, 4, 6, 8, 10]


def test_cli_table_output(tmp_path, capsys):
    table = tmp_path / "t.csv"
    small_table().to_csv(table, index=False)
    code, out, _ = run_cli(["analyze", table, "--permutations", 100], capsys)
    assert code == 0
    line = next(ln for ln in out.splitlines() if ln.startswith("nc4_agreement"))
    assert "↑" in line and "1.000000" in line


@pytest.mark.parametrize(
    "case, message",
    [
        ("two_models", "at least 3 models"),
        ("no_target", "target column 'val_loss'"),
        ("bad_cell", "column 'nc1_cdnv', row 2 (model 'b')"),
        ("missing", "does not exist"),
        ("nothing", "no inputs"),
    ],
)
def test_cli_bad_input(tmp_path, capsys, case, message):
    df = small_table()
    if case == "two_models":
        df = df.head(2)
    elif case == "no_target":
        df = df.drop(columns="val_loss")
    elif case == "bad_cell":
        df["nc1_cdnv"] = df["nc1_cdnv"].astype(object)
        df.loc[1, "nc1_cdnv"] = "oops"
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    args = {"missing": [tmp_path / "nope.csv"], "nothing": []}.get(case, [path])
    code, _, err = run_cli(["analyze", *args, "--permutations", 10], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], err


def test_mixed_type_column_survives_parquet(tmp_path, capsys):
    write_run(tmp_path / "runs", "a", {"layer": 6, "val_loss": 3.0, "nc1_cdnv": 0.3})
    write_run(tmp_path / "runs", "b", {"layer": "last", "val_loss": 2.0, "nc1_cdnv": 0.2})
    write_run(tmp_path / "runs", "c", {"layer": "last", "val_loss": 1.0, "nc1_cdnv": 0.2})
    code, _, err = run_cli(
        ["analyze", tmp_path / "runs", "--permutations", 10, "--out", tmp_path / "o"], capsys
    )
    assert code == 0, err
    assert list(pd.read_parquet(tmp_path / "o/results.parquet")["layer"]) == ["6", "last", "last"]


@needs_published
def test_cli_published_and_its_converted_table_agree(tmp_path, capsys):
    args = ["--permutations", 100, "--json"]
    code, out, _ = run_cli(["analyze", "--published", PUBLISHED, "--out", tmp_path, *args], capsys)
    assert code == 0
    direct = json.loads(out)
    assert direct["n_models"] == 230
    assert direct["metrics"]["nc4_agreement"]["r2"] == pytest.approx(0.890585, abs=1e-6)
    code, out, _ = run_cli(["analyze", tmp_path / "results.csv", *args], capsys)
    assert code == 0 and json.loads(out) == direct
    code, out, _ = run_cli(["analyze", PUBLISHED, *args], capsys)  # recognised as is
    assert code == 0 and json.loads(out) == direct


# The library entry the CLI and the sweep share: AnalyzeConfig → analyze.


def _runs_and_a_table(root: Path) -> list[Path]:
    """Run dirs with config.json (so configs.json is written), and a table without a
    'model' column and with a constant metric (so both gathering and correlating note)."""
    for i, (loss, cdnv) in enumerate([(3.0, 0.9), (2.5, 0.7), (2.0, 0.8), (1.0, 0.1)]):
        metrics = {"model": f"m{i}", "val_loss": loss, "nc1_cdnv": cdnv, "nc4_agreement": 0.5}
        write_run(root / "runs", f"r{i}", metrics, {"width": 8 * (i + 1), "epochs": 1})
    table = root / "t.csv"
    small_table().drop(columns="model").assign(nc4_agreement=0.5).to_csv(table, index=False)
    return [root / "runs", table]


def test_analyze_gives_what_the_cli_gives(tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO)
    inputs = _runs_and_a_table(tmp_path)
    options = ["--permutations", 50, "--seed", 3, "--json"]
    code, out, err = run_cli(["analyze", *inputs, *options, "--out", tmp_path / "cli"], capsys)
    assert code == 0, err
    said = [r.getMessage() for r in caplog.records if r.name == "lingcollapse.cli.analyze"]
    cfg = AnalyzeConfig(inputs, permutations=50, seed=3, out=tmp_path / "lib")
    corr = analyze(cfg)
    assert corr.as_json() == json.loads(out)
    assert corr.n_models == 9 and corr.metrics["nc4_agreement"].n == 9
    for name in ("correlations.json", "configs.json", "results.csv"):
        assert (tmp_path / "lib" / name).read_bytes() == (tmp_path / "cli" / name).read_bytes()
    assert said == [f"note: {n}" for n in corr.notes]
    assert corr.notes[0].startswith("t.csv has no 'model' column")  # gathering's, first
    assert corr.notes[-1] == "r undefined (NaN), constant across the models: nc4_agreement"


def test_analyze_without_out_writes_nothing(tmp_path):
    inputs = _runs_and_a_table(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    corr = analyze(AnalyzeConfig([str(p) for p in inputs], permutations=20))
    assert corr.metrics["nc1_cdnv"].n == 9 and corr.permutations == 20
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize(
    "options, message",
    [
        ({"figures": True}, "--figures needs --out DIR to draw into"),
        ({"permutations": 0}, "--permutations must be positive, not 0"),
        ({"permutations": -5, "out": "o"}, "--permutations must be positive, not -5"),
    ],
)
def test_analyze_config_refuses_bad_options_without_reading_inputs(tmp_path, options, message):
    with pytest.raises(UserError, match=re.escape(message)):
        AnalyzeConfig([tmp_path / "nope.csv"], **options)


def test_analyze_config_of_inputs_not_yet_made(tmp_path):
    cfg = AnalyzeConfig([str(tmp_path / "runs")], out=str(tmp_path / "o"), figures=True)
    assert cfg.inputs == [tmp_path / "runs"] and cfg.out == tmp_path / "o"
    assert (cfg.target, cfg.permutations, cfg.seed, cfg.published) == ("val_loss", 100_000, 0, [])
    assert list(tmp_path.iterdir()) == []  # checked, nothing read or made


def test_a_table_without_metric_columns_is_one_error(tmp_path, capsys):
    table = tmp_path / "t.csv"
    table.write_text("model,val_loss,width\na,1.0,8\nb,2.0,16\nc,3.0,32\n")
    assert main(["analyze", str(table)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no metric column" in err[0]


def test_few_models_get_the_exact_test_and_say_its_floor(tmp_path, capsys):
    """4 models, 10⁵ permutations ≥ 4! = 24: every pairing is enumerated; a perfect
    correlation gets the smallest two-sided p, 2/24, and nothing can reach 0.05."""
    table = tmp_path / "t.csv"
    small_table().head(4).to_csv(table, index=False)
    code, out, err = run_cli(["analyze", table, "--json"], capsys)
    assert code == 0, err
    cdnv = json.loads(out)["metrics"]["nc1_cdnv"]
    assert cdnv["exact"] is True and cdnv["p_se"] == 0.0
    assert cdnv["p_min"] == pytest.approx(2 / 24) and cdnv["p_value"] == pytest.approx(2 / 24)
    code, out, _ = run_cli(["analyze", table], capsys)
    assert "exact test over all pairings of 4 models" in out
    assert "smallest attainable p is 0.0833, so no p can be below 0.05" in out


def test_random_test_reports_its_monte_carlo_error():
    table = small_table()
    corr = correlate(table, permutations=999, seed=4)  # 5! = 120 ≤ 999: exact
    assert corr.metrics["unc3_duality_cov"].exact
    big = pd.DataFrame({"model": [str(i) for i in range(9)], "val_loss": np.arange(9.0)})
    big["nc1_cdnv"] = np.exp(np.random.default_rng(1).normal(size=9)) + big["val_loss"]
    corr = correlate(big, permutations=2_000, seed=4)  # 9! > 2,000: random
    c = corr.metrics["nc1_cdnv"]
    assert not c.exact and c.p_min == pytest.approx(2 / 2_001)
    assert c.p_se == pytest.approx(math.sqrt(c.p_value * (2 - c.p_value) / 2_000))


def test_plotted_r2_is_of_the_log_axis_for_cdnv():
    """CDNV is drawn on a log axis: its plotted R² is of log10 CDNV; Table 1's R² stays
    that of the raw values; other metrics are plotted as they are."""
    table = small_table().assign(nc1_cdnv=[1.0, 10.0, 100.0, 1_000.0, 10_000.0])
    corr = correlate(table, permutations=100)
    cdnv, nc4 = corr.metrics["nc1_cdnv"], corr.metrics["nc4_agreement"]
    assert cdnv.log_axis and cdnv.r2_plotted == pytest.approx(1.0)
    raw = np.corrcoef(table["nc1_cdnv"], table["val_loss"])[0, 1] ** 2
    assert cdnv.r2 == pytest.approx(raw) and raw < 0.8
    assert not nc4.log_axis and nc4.r2_plotted == nc4.r2


@needs_published
def test_published_cdnv_r2_raw_and_as_plotted():
    """Figure 1's NC1 panel: 0.315 of raw CDNV over the 230 models, 0.916 of log CDNV."""
    corr = correlate(published.load_published(PUBLISHED), permutations=100)
    assert corr.n_models == 230
    assert corr.metrics["nc1_cdnv"].r2 == pytest.approx(0.315, abs=5e-4)
    assert corr.metrics["nc1_cdnv"].r2_plotted == pytest.approx(0.916, abs=5e-4)


@needs_published
def test_table1_as_a_command(capsys, caplog):
    """`analyze --published … --select '02x0768_01d*'` is Table 1: the 21 seeds, R² to the
    paper's digits, NC1 significant at 0.05 with the default 10⁵ permutations."""
    argv = ["analyze", "--published", PUBLISHED, "--select", "02x0768_01d*", "--json"]
    caplog.set_level(logging.INFO)
    code, out, err = run_cli(argv, capsys)
    assert code == 0, err
    js = json.loads(out)
    assert js["n_models"] == 21 and js["permutations"] == 100_000
    for name, r2, _ in TABLE1:
        assert js["metrics"][name]["r2"] == pytest.approx(r2, abs=5e-7), name
    nc1 = js["metrics"]["nc1_cdnv"]
    assert nc1["p_value"] < 0.05 and nc1["p_se"] < 0.0011  # 0.0482 ± 0.0010 (paper: 0.0485)
    assert nc1["p_se"] == pytest.approx(math.sqrt(nc1["p_value"] * (2 - nc1["p_value"]) / 1e5))
    assert "--select 02x0768_01d*: 21 of 230 models" in caplog.text


def test_select_by_run_name_and_several_globs(tmp_path):
    table = small_table().assign(run=["r1", "r1", "r2", "r3", "r3"])
    path = tmp_path / "t.csv"
    table.to_csv(path, index=False)
    corr = analyze(AnalyzeConfig([path], select=["r1", "e"], permutations=10))
    assert corr.n_models == 3
    with pytest.raises(UserError, match="matches none of the 5 models"):
        analyze(AnalyzeConfig([path], select=["zz*"], permutations=10))


@pytest.mark.skipif(not LATER.is_file(), reason="published data absent")
def test_the_later_table_is_read_with_its_dot_products_named_as_such():
    """lc-2024_10_24.csv: variances become stds, its interfere_* (raw dot products of
    centred means) keep a name of their own, and the values it shares with the
    2024-05 table agree: CDNV and agreement exactly, log norms once their squared norms
    are halved."""
    raw = pd.read_csv(LATER)
    later = published.load_published(LATER)
    row, mine = raw.iloc[0], later.iloc[0]
    assert mine["nc2_interference_dot_mean"] == row.interfere_mean
    assert mine["nc2_interference_dot_std"] == pytest.approx(math.sqrt(row.interfere_var))
    assert "nc2_interference_mean" not in later and "nc2_equiangular_cov" not in later
    assert mine["gnc2_uniformity_cov"] == pytest.approx(
        math.sqrt(row.log_kern_var) / row.log_kern_mean
    )
    assert mine["nc3_zhu_error"] == row.dual_error and mine["nc2_etf_error"] == row.etf_error
    assert mine["nc3_distance_mean"] == row.dists_mean
    assert mine["nc3_dot_std"] == pytest.approx(math.sqrt(row.simdot_var))
    earlier = published.load_published(PUBLISHED)
    both = later.merge(earlier, on="model", suffixes=("", "_may"))
    assert len(both) == 230
    for name in ("nc1_cdnv", "nc4_agreement", "val_loss", "nc2_norm_mean", "nc2_equinorm_cov"):
        ours, theirs = both[name].to_numpy(), both[f"{name}_may"].to_numpy()
        assert ours == pytest.approx(theirs, rel=1e-5), name  # float32 in their tables
    assert set(both["source"]) == {"lc-2024_10_24"}


@pytest.mark.skipif(not LATER.is_file(), reason="published data absent")
def test_analyze_reads_both_published_tables(tmp_path, capsys):
    for table in (PUBLISHED, LATER):
        code, out, err = run_cli(
            ["analyze", "--published", table, "--permutations", 100, "--json"], capsys
        )
        assert code == 0, err
        assert json.loads(out)["n_models"] == 230


def test_an_epoch_model_takes_its_runs_training_config(tmp_path):
    """RUN/epoch-E/ is measured in place, beside the Hugging Face config.json of its
    model: its lr and batch size are the run's, as for the run's last model."""
    run = write_run(
        tmp_path, "run", {"model": "m@2", "val_loss": 1.0}, {"lr": 2e-3, "batch_size": 16}
    )
    epoch = run / "epoch-1"
    epoch.mkdir()
    (epoch / "metrics.json").write_text(json.dumps({"model": "m@0", "val_loss": 2.0}))
    (epoch / "config.json").write_text(json.dumps({"model_type": "gpt_neo", "hidden_size": 32}))
    gathered = gather([tmp_path])
    table = gathered.table.set_index("model")
    assert table.loc["m@0", "lr"] == table.loc["m@2", "lr"] == 2e-3
    assert gathered.configs["m@0"] == {"lr": 2e-3, "batch_size": 16}
