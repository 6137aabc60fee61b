"""A tiny sweep end to end: corpus → train → collect → measure → analyze → report."""

import json

import pandas as pd
import pytest

from lingcollapse.cli import main

GRID = """
name = "tiny"
[data]
corpus = "embedded"
tokens = 40_000
seq_len = 32
vocab_size = 300
[train]
widths = [8, 32]
depths = [1]
epochs = [1, 2]
options = { batch_size = 32, lr = 3e-3, allow_any_size = true }
[collect]
batch_size = 64
[analyze]
permutations = 200
"""


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    grid = tmp / "grid.toml"
    grid.write_text(GRID)
    out = tmp / "out"
    assert main(["sweep", str(grid), "--out", str(out)]) == 0
    return grid, out


def test_sweep_writes_the_design_outputs(swept):
    _, out = swept
    results = pd.read_csv(out / "results.csv")
    assert len(results) == 4
    assert {
        "model",
        "width",
        "depth",
        "n_params",
        "epochs",
        "weight_decay",
        "seed",
        "nc1_cdnv",
        "nc4_agreement",
        "val_loss",
    } <= set(results.columns)
    corr = json.loads((out / "correlations.json").read_text())
    assert corr["n_models"] == 4 and "nc1_cdnv" in corr["metrics"]
    assert list((out / "figures").glob("*.png"))
    assert "<html" in (out / "report.html").read_text().lower()


def test_rerun_is_a_no_op_and_other_settings_are_refused(swept, capsys):
    grid, out = swept
    stamp = out / "runs" / "TinyStories-01x0008_01d" / "model" / "model.safetensors"
    before = stamp.stat().st_mtime_ns
    assert main(["sweep", str(grid), "--out", str(out)]) == 0
    assert stamp.stat().st_mtime_ns == before
    other = grid.with_name("other.toml")
    other.write_text(GRID.replace("lr = 3e-3", "lr = 1e-3"))
    capsys.readouterr()
    assert main(["sweep", str(other), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "another sweep" in err[0] and "train" in err[0]


def test_bad_grid_names_the_key(tmp_path, capsys):
    grid = tmp_path / "g.toml"
    grid.write_text(GRID.replace("widths", "widht"))
    assert main(["sweep", str(grid), "--out", str(tmp_path / "o")]) == 2
    assert "widht" in capsys.readouterr().err


def test_slurm_executor_submits_cells_then_analyze(tmp_path):
    """submitit's debug cluster runs the same jobs in-process: one per cell, then the
    analyze/report job."""
    import tomllib

    from lingcollapse.sweep.executors import cell_hours, run_slurm
    from lingcollapse.sweep.grid import parse_grid

    grid = parse_grid(
        tomllib.loads(
            GRID.replace("widths = [8, 32]", "widths = [8, 16, 32]").replace(
                "epochs = [1, 2]", "epochs = [1]"
            )
        )
    )
    out = tmp_path / "out"
    jobs = run_slurm(grid, out, cluster="debug")
    assert len(jobs) == 4
    for job in jobs:
        job.result()
    assert len(list((out / "runs").glob("*/metrics.json"))) == 3
    assert (out / "report.html").is_file()
    assert cell_hours(grid, grid.cells[0]) == 8 + 6  # 1 epoch × 8 h + collection


def test_hub_style_model_cells_need_no_training(tmp_path):
    """A [[models]] entry (any HF causal LM; here a local dir standing in for a hub id)
    is collected and measured as it is, with its identity recorded."""
    from tiny import save_model

    model = save_model(tmp_path / "lm", "gpt2", vocab=300)
    grid = tmp_path / "g.toml"
    grid.write_text(GRID.split("[train]")[0] + f'[[models]]\nid = "{model}"\nname = "tiny-lm"\n')
    out = tmp_path / "out"
    assert main(["sweep", str(grid), "--out", str(out)]) == 0
    metrics = json.loads((out / "runs" / "tiny-lm" / "metrics.json").read_text())
    assert metrics["model"] == "tiny-lm" and "nc3_duality_mean" in metrics
    assert not (out / "runs" / "tiny-lm" / "model").exists()
