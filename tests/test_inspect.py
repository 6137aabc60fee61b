"""inspect: chosen tokens beside the average token, and one token's neighbours (App. Q)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from lingcollapse.analysis import inspect
from lingcollapse.cli import main
from lingcollapse.errors import UserError

TOKENS = {0: "<eos>", 1: " bank", 2: "bank", 3: " Tim", 4: " Anna", 5: " the", 7: " river"}
V, D = 9, 4  # ids 6 and 8 never occur: absent classes


def make_run(tmp_path, with_stats=True):
    run = tmp_path / "run"
    (run / "stats").mkdir(parents=True)
    rng = np.random.default_rng(0)
    counts = np.zeros(V, dtype=np.int64)
    ids = sorted(TOKENS)
    counts[ids] = [5, 3, 2, 4, 6, 50, 7]
    means = np.zeros((V, D))
    means[ids] = rng.normal(size=(len(ids), D))
    means[6] = 100.0  # garbage in an absent class must not move the centre
    sigma2 = rng.uniform(0.5, 2.0, size=len(ids))
    classes = pd.DataFrame(
        {
            "token_id": ids,
            "token": [TOKENS[i] for i in ids],
            "count": counts[ids],
            "sigma2": sigma2,
            "log_norm": rng.normal(size=len(ids)),
            "cdnv_mean": rng.uniform(size=len(ids)),
            "interference_mean": rng.normal(scale=0.1, size=len(ids)),
        }
    )
    classes.to_parquet(run / "classes.parquet")
    (run / "metrics.json").write_text(json.dumps({"min_count": 1, "cdnv_power": 2.0}))
    if with_stats:
        save_file(
            {"counts": torch.from_numpy(counts), "means": torch.from_numpy(means)},
            str(run / "stats" / "train.safetensors"),
        )
    return run, counts, means, classes


def test_find_tokens_exact_text_first_then_without_space(tmp_path):
    run, *_ = make_run(tmp_path)
    classes = inspect.load_classes(run)
    assert list(inspect.find_tokens(classes, ["bank"])["token_id"]) == [2]  # not " bank"
    assert list(inspect.find_tokens(classes, [" bank"])["token_id"]) == [1]
    assert list(inspect.find_tokens(classes, ["Tim"])["token_id"]) == [3]  # " Tim" only
    assert list(inspect.find_tokens(classes, [" the", "7"])["token_id"]) == [5, 7]
    with pytest.raises(UserError, match=r"'Tom' \(did you mean 'Tim'\?\)"):
        inspect.find_tokens(classes, ["Tom"])


class Pieces:
    """A tokenizer that splits every word into its letters."""

    def encode(self, word, add_special_tokens=False):
        return [ord(ch) for ch in word]

    def decode(self, ids):
        return "".join(map(chr, ids))


def test_a_word_the_tokenizer_splits_is_named_with_its_pieces(tmp_path):
    run, *_ = make_run(tmp_path)
    classes = inspect.load_classes(run)
    with pytest.raises(UserError, match=r"'Tom' is not one token: .* 'T' \+ 'o' \+ 'm'"):
        inspect.find_tokens(classes, ["Tom"], lambda: Pieces())
    assert list(inspect.find_tokens(classes, ["Anna"], lambda: 1 / 0)["token_id"]) == [4]


def test_ids_choose_token_ids_in_order(tmp_path, capsys):
    run, *_ = make_run(tmp_path)
    classes = inspect.load_classes(run)
    assert list(inspect.find_ids(classes, [5, 0, 5])["token_id"]) == [5, 0]
    with pytest.raises(UserError, match=r"token id\(s\) 6, 8 not among the 7 measured classes"):
        inspect.find_ids(classes, [6, 8])
    assert main(["inspect", str(run), "--ids", "0", "--neighbours", "2"]) == 0
    out = capsys.readouterr().out
    assert "'<eos>'" in out and "most interfering with token 0" in out


def test_scaled_norm_of_table_4(tmp_path, capsys):
    """Table 4's scaled norm ‖μ_c − μ̄‖²/√d, beside the log norm, when measure recorded d."""
    run, _, _, classes = make_run(tmp_path)
    assert "norm_scaled" not in inspect.with_scaled_norm(classes, run)  # no dim recorded
    (run / "metrics.json").write_text(json.dumps({"min_count": 1, "dim": D}))
    scaled = inspect.with_scaled_norm(classes, run)
    assert list(scaled.columns).index("norm_scaled") == list(scaled.columns).index("log_norm") + 1
    assert scaled["norm_scaled"].tolist() == pytest.approx(np.exp(2 * classes["log_norm"]) / 2.0)
    assert main(["inspect", str(run), "--tokens", "Anna", " the"]) == 0
    out = capsys.readouterr().out
    assert "norm_scaled" in out and "neighbours are listed for one token at a time" in out


def test_average_and_extremes(tmp_path):
    _run, _, _, classes = make_run(tmp_path)
    avg = inspect.average_row(classes)
    assert avg["sigma2"] == pytest.approx(classes["sigma2"].mean())
    top = inspect.extremes(classes, "count", 2, largest=True)
    assert list(top["token_id"]) == [5, 7]
    assert list(inspect.extremes(classes, "count", 1, largest=False)["token_id"]) == [2]
    with pytest.raises(UserError, match="no column 'nope'"):
        inspect.extremes(classes, "nope", 2, largest=True)


def test_neighbours_match_brute_force(tmp_path):
    run, counts, means, classes = make_run(tmp_path)
    near = inspect.neighbours(run, 4, classes, k=3)
    kept = np.flatnonzero(counts > 0)
    z = means[kept] - means[kept].mean(axis=0)  # unweighted centre of present classes
    c = list(kept).index(4)
    cos = {
        int(kept[j]): float(z[j] @ z[c] / np.linalg.norm(z[j]) / np.linalg.norm(z[c]))
        for j in range(len(kept))
        if j != c
    }
    order = sorted(cos, key=cos.get)
    assert list(near.interfering["token_id"]) == order[::-1][:3]
    assert list(near.separated["token_id"]) == order[:3]
    assert near.interfering["interference"].tolist() == pytest.approx(
        [cos[i] for i in order[::-1][:3]]
    )
    # Pair CDNV (Eq. 4, k = 2) of the most separated token.
    j = order[0]
    s2 = classes.set_index("token_id")["sigma2"]
    dist = np.linalg.norm(means[4] - means[j])
    assert near.separated["cdnv"].iloc[0] == pytest.approx((s2[4] + s2[j]) / (2 * dist**4))
    assert near.separated["token"].iloc[0] == TOKENS[j]


def test_cli_single_token(tmp_path, capsys):
    run, *_ = make_run(tmp_path)
    assert main(["inspect", str(run), "--tokens", "Anna", "--neighbours", "2"]) == 0
    out = capsys.readouterr().out
    assert "' Anna'" in out and "(avg)" in out
    assert "most interfering" in out and "most separated" in out


def test_cli_without_stats_shows_table_only(tmp_path, capsys):
    run, *_ = make_run(tmp_path, with_stats=False)
    assert main(["inspect", str(run), "--tokens", "Anna"]) == 0
    out = capsys.readouterr().out
    assert "' Anna'" in out and "table only" in out and "most interfering" not in out


def test_cli_top(tmp_path, capsys):
    run, *_ = make_run(tmp_path)
    assert main(["inspect", str(run), "--top", "2", "--by", "count"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "' the'" in lines[2] and "' river'" in lines[3] and "(avg)" in lines[4]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--tokens", "Tom"], "did you mean 'Tim'?"),
        (["--top", "2", "--by", "nope"], "no column 'nope'"),
        (["--bottom", "0"], "must be positive"),
    ],
)
def test_cli_bad_input(tmp_path, capsys, argv, message):
    run, *_ = make_run(tmp_path)
    assert main(["inspect", str(run), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0]


def test_cli_missing_classes(tmp_path, capsys):
    assert main(["inspect", str(tmp_path), "--tokens", "a"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "classes.parquet not found" in err[0]


def test_on_a_measured_run(tmp_path, capsys):
    """Contract with measure: its classes.parquet and metrics.json feed inspect and analyze."""
    from importlib.resources import files

    from lingcollapse.analysis.correlation import metric_columns
    from lingcollapse.analysis.table import gather

    examples = files("lingcollapse") / "examples"
    stats = tmp_path / "run" / "stats"
    stats.mkdir(parents=True)
    for name in ("train.safetensors", "validation.safetensors"):
        (stats / name).write_bytes((examples / name).read_bytes())
    classifier = str(examples / "classifier.safetensors")
    assert main(["measure", str(stats / "train.safetensors"), "--classifier", classifier]) == 0
    capsys.readouterr()
    run = tmp_path / "run"
    classes = inspect.load_classes(run)
    assert set(inspect.COLUMNS) <= set(classes.columns)
    assert main(["inspect", str(run), "--tokens", "7", "--neighbours", "2"]) == 0
    out = capsys.readouterr().out
    assert "most interfering" in out and "(avg)" in out
    # One row of Eq. 6 here, averaged, is measure's per-class row mean from its tiled pass.
    near = inspect.neighbours(run, 7, classes, k=len(classes))
    row = classes.set_index("token_id").loc[7]
    assert near.interfering["interference"].mean() == pytest.approx(row["interference_mean"])
    table = gather([run]).table
    assert table["model"].tolist() == ["synthetic-example"]
    cols = metric_columns(table, "val_loss")
    assert {"nc1_cdnv", "gnc2_uniformity_cov", "unc3_duality_cov", "nc4_agreement"} <= set(cols)
    assert "n_classes" not in cols and "cdnv_power" not in cols
