"""Grid files: cells, names, shipped grids, and every bad key or value named."""

import tomllib
from pathlib import Path

import pytest

from lingcollapse.errors import UserError
from lingcollapse.models.ids import run_name
from lingcollapse.sweep.grid import load_grid, parse_grid

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
SWEEP = Path(__file__).resolve().parent.parent / "src" / "lingcollapse" / "sweep"


def test_cells_are_the_product_plus_extras_plus_hub_models():
    grid = parse_grid(
        {
            "train": {
                "widths": [64, 128],
                "depths": [1, 2],
                "epochs": [1, 3],
                "weight_decays": [0.0005, 0.1],
                "seeds": [0],
                "extra": [{"widths": [768], "depths": [2], "seeds": [1, 2, 3]}],
            },
            "models": [{"id": "EleutherAI/pythia-70m", "revisions": ["step1000", "step2000"]}],
        }
    )
    trained = [c for c in grid.cells if c.trained]
    assert len(trained) == 2 * 2 * 2 * 2 + 3
    assert {c.name for c in trained} >= {"TinyStories-01x0064_01d", "TinyStories-02x0128_03L"}
    hub = [c for c in grid.cells if not c.trained]
    assert [c.name for c in hub] == ["pythia-70m@step1000", "pythia-70m@step2000"]
    assert hub[0].revision == "step1000"


def test_run_names_follow_the_paper():
    assert run_name(2, 768, 1, 0.0005, 0) == "TinyStories-02x0768_01d"
    assert run_name(12, 1024, 10, 0.1, 0) == "TinyStories-12x1024_10L"


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
        ({"train": {"widths": [8, 8], "depths": [1]}}, ["twice"]),
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
        SWEEP / "demo.toml",
        SWEEP / "demo-quick.toml",
    ],
)
def test_shipped_grids_parse(path):
    grid = load_grid(path)
    assert grid.cells


def test_paper_grid_is_the_papers():
    grid = load_grid(CONFIGS / "paper.toml")
    trained = [c for c in grid.cells if c.trained]
    # 30 architectures × 3 epoch counts × 2 weight decays, plus 20 more seeds of 2×768
    assert len(trained) == 30 * 3 * 2 + 20
    seeds = [
        c for c in trained if (c.width, c.depth, c.epochs, c.weight_decay) == (768, 2, 1, 0.0005)
    ]
    assert len(seeds) == 21
    assert tomllib.loads((CONFIGS / "paper.toml").read_text())["data"]["corpus"] == "tinystories"
