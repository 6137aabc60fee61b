"""Grid files: cells, names, shipped grids, and every bad key or value named."""

import tomllib
from pathlib import Path

import pytest

from lingcollapse.errors import UserError
from lingcollapse.models.ids import run_name
from lingcollapse.sweep.grid import load_grid, parse_grid

CONFIGS = Path(__file__).resolve().parent.parent / "src" / "lingcollapse" / "configs"
PUBLISHED = Path(__file__).resolve().parents[2] / "shared" / "data" / "published"


def test_runs_are_the_product_plus_extras_and_models_their_epochs_plus_hub_models():
    grid = parse_grid(
        {
            "train": {
                "widths": [64, 128],
                "depths": [1, 2],
                "epochs": [1, 3],
                "weight_decays": [0.0005, 0.1],
                "extra": [
                    {"widths": [768], "depths": [2], "seeds": [1, 2, 3]},  # inherits epochs …
                    {"epochs": [10], "measure_epochs": [6, 10]},  # … or widths and depths
                ],
            },
            "models": [{"id": "EleutherAI/pythia-70m", "revisions": ["step1000", "step2000"]}],
        }
    )
    assert len(grid.runs) == 2 * 2 * 2 * 2 + 3 * 2 * 2 + 2 * 2 * 2
    names = {r.name for r in grid.runs}
    assert {
        "Stories-01x0064_01d",  # the built-in corpus (the default), not TinyStories
        "Stories-02x0128_03L",
        "Stories-02x0768_03L02",
    } <= names
    trained = [m for m in grid.models if m.trained]
    assert len(trained) == 16 + 12 + 8 * 2  # the 10-epoch runs give two models each
    ten = next(r for r in grid.runs if r.name == "Stories-01x0064_10L")
    assert ten.save_epochs == [6]
    assert [m.name for m in grid.models if m.run is ten] == ["01x0064_10L@5", "01x0064_10L@9"]
    hub = [m for m in grid.models if not m.trained]
    assert [m.name for m in hub] == ["pythia-70m@step1000", "pythia-70m@step2000"]
    assert hub[0].revision == "step1000"


def test_run_names_follow_the_paper():
    assert run_name(2, 768, 1, 0.0005) == "TinyStories-02x0768_01d"  # the Trainer's seed 42
    assert run_name(12, 1024, 10, 0.1) == "TinyStories-12x1024_10L"
    assert run_name(2, 768, 1, 0.0005, 7) == "TinyStories-02x0768_01d07"
    assert run_name(1, 32, 3, 0.0005, corpus="Stories") == "Stories-01x0032_03d"


@pytest.mark.parametrize(
    "raw,words",
    [
        ({"trian": {}}, ["trian", "train"]),
        ({"train": {"widht": [1]}}, ["widht", "widths"]),
        ({"train": {"widths": [64], "depths": []}}, ["depths", "non-empty"]),
        ({"train": {"widths": [64], "depths": [0]}}, ["depths", "impossible"]),
        ({"train": {"widths": [-3], "depths": [1]}}, ["widths", "impossible"]),
        ({"train": {"widths": ["big"], "depths": [1]}}, ["widths", "impossible"]),
        ({"train": {"widths": [64]}}, ["depths", "missing"]),
        ({"models": [{"revisions": ["a"]}]}, ["id", "missing"]),
        ({"models": [{"id": "x", "revison": "a"}]}, ["revison", "revisions"]),
        ({"collect": {"batchsize": 3}, "train": {"widths": [8], "depths": [1]}}, ["batchsize"]),
        ({"executor": {"kind": "k8s"}, "train": {"widths": [8], "depths": [1]}}, ["k8s"]),
        ({}, ["no models"]),
        (
            {"train": {"widths": [8, 8], "depths": [1]}},
            ["[train] lists the run Stories-01x0008_01d twice"],
        ),
        (
            {"train": {"widths": [8], "depths": [1], "extra": [{"epochs": [1]}]}},
            ["[train] and g.toml: [[train.extra]] #1 both list", "01x0008_01d"],
        ),
        (
            {"train": {"widths": [8], "depths": [1], "epochs": [3], "measure_epochs": [2, 4]}},
            ["measure_epochs [4] is past the 3 epoch(s)"],
        ),
        ({"train": {"widths": [8], "depths": [1], "measure_epochs": [0]}}, ["impossible"]),
        ({"train": {"widths": [8], "depths": [1], "options": {"batch_sise": 1}}}, ["'batch_size'"]),
        (
            {
                "train": {"widths": [8], "depths": [1]},
                "models": [{"id": "a", "name": "01x0008_01d@0"}],
            },
            ["01x0008_01d@0 twice"],
        ),
    ],
)
def test_bad_grids_name_the_key(raw, words):
    with pytest.raises(UserError) as err:
        parse_grid(raw, where="g.toml")
    for word in words:
        assert word in str(err.value)


@pytest.mark.parametrize(
    "path",
    [
        CONFIGS / "paper.toml",
        CONFIGS / "pythia.toml",
        CONFIGS / "demo.toml",
        CONFIGS / "demo-quick.toml",
    ],
)
def test_shipped_grids_parse(path):
    grid = load_grid(path)
    assert grid.models


def test_paper_grid_is_the_papers():
    """170 runs, 230 models: exactly the ids of the authors' table."""
    grid = load_grid(CONFIGS / "paper.toml")
    assert len(grid.runs) == 30 * 5 + 20 and len(grid.models) == 230
    seeds = [
        r for r in grid.runs if (r.width, r.depth, r.epochs, r.weight_decay) == (768, 2, 1, 0.0005)
    ]
    assert len(seeds) == 21
    assert not any(r.epochs == 3 and r.weight_decay == 0.1 for r in grid.runs)  # none in the paper
    published = PUBLISHED / "lc-2024_05_18.csv"
    if published.is_file():
        import pandas as pd

        assert {m.name for m in grid.models} == set(pd.read_csv(published)["model"])
    assert tomllib.loads((CONFIGS / "paper.toml").read_text())["data"]["corpus"] == "tinystories"
