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
epochs = [1]
options = { batch_size = 32, lr = 3e-3, allow_any_size = true }
[[train.extra]]
epochs = [2]
measure_epochs = [1, 2]
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
    assert len(results) == 6  # 4 runs; the 2-epoch ones measured after each epoch
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
    assert sorted(results["model"]) == [
        "01x0008_01d@0", "01x0008_02d@0", "01x0008_02d@1",
        "01x0032_01d@0", "01x0032_02d@0", "01x0032_02d@1",
    ]  # fmt: skip
    epoch1 = results[results["model"] == "01x0032_02d@0"].iloc[0]
    assert (epoch1["run"], epoch1["epochs"], epoch1["schedule_epochs"]) == (
        "Stories-01x0032_02d",
        1,
        2,
    )
    corr = json.loads((out / "correlations.json").read_text())
    assert corr["n_models"] == 6 and "nc1_cdnv" in corr["metrics"]
    assert (out / "figures" / "fig5_epochs.png").is_file()
    assert (out / "figures" / "training.png").is_file()
    assert list((out / "figures").glob("*.png"))
    assert "<html" in (out / "report.html").read_text().lower()


def test_rerun_is_a_no_op_and_other_settings_are_refused(swept, capsys):
    grid, out = swept
    stamp = out / "runs" / "Stories-01x0008_02d" / "epoch-1" / "model.safetensors"
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


def test_slurm_executor_submits_runs_then_analyze(tmp_path):
    """submitit's debug cluster runs the same jobs in-process: one per run (with its
    models), then the analyze/report job."""
    import tomllib

    from lingcollapse.sweep.executors import job_hours, run_slurm
    from lingcollapse.sweep.grid import parse_grid

    grid = parse_grid(tomllib.loads(GRID.replace("widths = [8, 32]", "widths = [8, 16]")))
    out = tmp_path / "out"
    jobs = run_slurm(grid, out, cluster="debug")
    assert len(jobs) == 4 + 1
    for job in jobs:
        job.result()
    assert len(list((out / "runs").glob("*/metrics.json"))) == 4
    assert len(list((out / "runs").glob("*/epoch-1/metrics.json"))) == 2
    assert (out / "report.html").is_file()
    run, models = grid.jobs()[-1]  # 2 epochs × 8 h, and a collection per model
    assert job_hours(grid, run, models) == 2 * 8 + 2 * 6


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


def test_plan_does_no_work_and_lists_runs_models_and_compute(tmp_path, capsys):
    grid = tmp_path / "g.toml"
    grid.write_text(GRID)
    out = tmp_path / "out"
    assert main(["sweep", str(grid), "--out", str(out), "--plan", "--json"]) == 0
    assert not out.exists()  # nothing made
    plan = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in plan["runs"]] == [
        "Stories-01x0008_01d", "Stories-01x0032_01d", "Stories-01x0008_02d", "Stories-01x0032_02d",
    ]  # fmt: skip
    assert plan["runs"][2]["save_epochs"] == [1]
    assert {(m["name"], m["run"], m["epoch"]) for m in plan["models"]} >= {
        ("01x0008_02d@0", "Stories-01x0008_02d", 1),
        ("01x0008_02d@1", "Stories-01x0008_02d", 2),
    }
    estimated = plan["data"]
    assert estimated["train_tokens"] == 38_000 and "estimated" in estimated["source"]
    run = plan["runs"][0]  # 6·N·D with N the matmul weights: positive, grows with width
    assert 0 < run["compute"]["train_flops"] < plan["runs"][1]["compute"]["train_flops"]
    assert plan["totals"]["runs"] == 4 and plan["totals"]["models"] == 6


def test_plan_counts_tokens_from_the_data_dir_once_there(swept, capsys):
    grid, out = swept
    assert main(["sweep", str(grid), "--out", str(out), "--plan", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    meta = json.loads((out / "data" / "meta.json").read_text())
    assert plan["data"]["train_tokens"] == meta["splits"]["train"]["N"]
    assert (
        plan["runs"][0]["n_params"]
        == json.loads((out / "runs" / "Stories-01x0008_01d" / "config.json").read_text())[
            "n_params"
        ]
    )
    assert main(["sweep", str(grid), "--out", str(out), "--plan"]) == 0  # the table
    text = capsys.readouterr().out
    assert "4 runs to train, 6 models to measure" in text and "01x0008_02d@1" in text


def test_the_paper_plan_is_the_authors_table(capsys):
    """`sweep paper --plan --json` (the bundled grid): the 230 model ids of
    lc-2024_05_18.csv, from 170 runs."""
    from pathlib import Path

    assert main(["sweep", "paper", "--plan", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert len(plan["runs"]) == 170 and len(plan["models"]) == 230
    models = {m["name"]: m for m in plan["models"]}
    assert models["02x0768_01d07@0"]["run"] == "TinyStories-02x0768_01d07"  # seed 7
    assert models["12x0512_10L@5"]["run"] == "TinyStories-12x0512_10L"
    assert models["12x0512_10L@5"]["epoch"] == 6
    published = Path(__file__).resolve().parents[2] / "shared/data/published/lc-2024_05_18.csv"
    if published.is_file():
        assert set(models) == set(pd.read_csv(published)["model"])
    assert plan["data"]["train_tokens"] == 469_514_249  # the paper's N (Appendix A)
    assert plan["totals"]["paper_train_hours"] > 0


def test_the_sweep_builds_configs_and_never_reenters_the_command_line():
    import subprocess
    import sys

    code = (
        "import sys, lingcollapse.sweep.stages, lingcollapse.sweep.executors, "
        "lingcollapse.sweep.plan; print(any(m.startswith('lingcollapse.cli') for m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr


def test_json_without_plan_is_refused(tmp_path, capsys):
    grid = tmp_path / "g.toml"
    grid.write_text(GRID)
    assert main(["sweep", str(grid), "--json"]) == 2
    assert "--plan" in capsys.readouterr().err
