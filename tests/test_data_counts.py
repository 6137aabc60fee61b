"""Appendix A's counts and Figure 4: samples per class from a data dir or train stats, and
the data a measured run names (S, T, V, samples per class) in metrics.json and the report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lingcollapse.analysis.figures import figure_class_counts
from lingcollapse.cli import main
from lingcollapse.data.counts import class_counts, top_classes
from tiny import VOCAB, data_dir, save_model


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """A data dir, and a run measured on it (train and validation stats, metrics.json)."""
    tmp = tmp_path_factory.mktemp("counts")
    data = data_dir(tmp / "data", sequences=(40, 12), seq_len=24)
    run = tmp / "run"
    model = save_model(run / "model", "gpt2")
    common = ["--data", str(data), "--batch-size", "8", "--device", "cpu"]
    train = run / "stats" / "train.safetensors"
    assert main(["collect", str(model), *common, "--out", str(train)]) == 0
    val = ["--split", "validation", "--train-stats", str(train)]
    assert (
        main(
            [
                "collect",
                str(model),
                *common,
                *val,
                "--out",
                str(run / "stats/validation.safetensors"),
            ]
        )
        == 0
    )
    assert main(["measure", str(train), "--json"]) == 0
    return data, run


def test_counts_of_a_data_dir_are_its_labels(measured):
    data, _ = measured
    tokens = np.load(data / "train.npy")
    found = class_counts(data)
    want = np.bincount(tokens[:, 1:].ravel(), minlength=VOCAB)  # labels: tokens 1..T−1
    np.testing.assert_array_equal(found.counts, want)
    seen = want[want > 0]
    assert found.summary() == {
        "n_sequences": 40,
        "seq_len": 24,
        "n_samples": 40 * 23,
        "vocab_size": VOCAB,
        "n_classes": int(seen.size),
        "samples_per_class_mean": pytest.approx(seen.mean()),
        "samples_per_class_std": pytest.approx(seen.std()),
    }
    top = top_classes(found, 3)
    assert [n for _, n, _ in top] == sorted(seen, reverse=True)[:3]


def test_stats_and_the_run_give_the_data_dirs_counts(measured):
    data, run = measured
    from_data = class_counts(data)
    for source in (run / "stats" / "train.safetensors", run):
        found = class_counts(source)
        np.testing.assert_array_equal(found.counts, from_data.counts)
        assert (found.sequences, found.seq_len) == (40, 24)


def test_measure_names_the_data(measured, capsys):
    data, run = measured
    metrics = json.loads((run / "metrics.json").read_text())
    summary = class_counts(data).summary()
    assert metrics["n_sequences"] == 40 and metrics["seq_len"] == 24
    assert metrics["vocab_size"] == VOCAB and metrics["n_samples"] == 40 * 23
    assert metrics["samples_per_class_mean"] == pytest.approx(summary["samples_per_class_mean"])
    assert metrics["samples_per_class_std"] == pytest.approx(summary["samples_per_class_std"])
    assert len(metrics["data_sha256"]) == 12


def test_data_counts_command_and_figure4(measured, tmp_path, capsys):
    data, _ = measured
    assert main(["data", "counts", str(data), "--out", str(tmp_path), "--top", "5", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["n_sequences"] == 40 and len(got["top"]) == 5
    counts = [n for _, n, _ in got["top"]]
    assert counts == sorted(counts, reverse=True)
    assert (tmp_path / "fig4_class_counts.png").stat().st_size > 1000
    assert main(["data", "counts", str(data)]) == 0
    out = capsys.readouterr().out
    assert "S 40, T 24, N 920" in out and "samples per class" in out
    fig = figure_class_counts(class_counts(data), top=500)
    bars = fig.axes[0].patches
    assert len(bars) == int((class_counts(data).counts > 0).sum())  # fewer classes than 500
    assert fig.axes[0].get_yscale() == "log"


def test_analyze_draws_figure4_from_the_data(measured, tmp_path, capsys):
    data, run = measured
    out = tmp_path / "out"
    argv = ["analyze", str(run), str(run), "--figures", "--class-counts", str(data)]
    # one run given twice: its duplicate row is dropped, and 1 model cannot be correlated
    assert main([*argv, "--out", str(out)]) == 2
    assert not out.exists()
