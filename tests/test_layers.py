"""Layer-wise NC by default: each layer's train stats are measured with that layer's
validation stats, into that layer's outputs; sweeps measure every collected layer;
analyze and the report show every metric against depth."""

import json
import tomllib

import pandas as pd
import pytest

from lingcollapse.cli import main
from lingcollapse.stats.files import load_stats
from test_sweep import GRID
from tiny import data_dir, save_model


@pytest.fixture(scope="module")
def collected(tmp_path_factory):
    """A 2-block model's stats of every layer, both splits, as `collect --layers all`."""
    root = tmp_path_factory.mktemp("layers")
    data = data_dir(root / "data", sequences=(24, 8), seq_len=20)
    model = save_model(root / "model", "gpt-neo", layers=2)
    stats = root / "stats"
    base = ["collect", str(model), "--data", str(data), "--layers", "all", "--device", "cpu"]
    assert main([*base, "--out", str(stats / "train.safetensors")]) == 0
    assert main([*base, "--split", "validation", "--train-stats", str(stats / "train.safetensors"),
                 "--out", str(stats / "validation.safetensors")]) == 0  # fmt: skip
    return root, model


def test_an_inner_layer_is_measured_with_its_own_validation_stats(collected):
    root, model = collected
    stats = root / "stats"
    assert main(["measure", str(stats / "train.safetensors"), "--classifier", str(model)]) == 0
    last = (root / "metrics.json").read_bytes()
    code = main(["measure", str(stats / "train.layer01.safetensors"), "--classifier", str(model)])
    assert code == 0  # was: "made from other train means" (it took the last layer's)
    assert (root / "metrics.json").read_bytes() == last  # the last layer's untouched
    inner = json.loads((root / "metrics.layer01.json").read_text())
    assert (root / "classes.layer01.parquet").is_file()
    totals = load_stats(stats / "validation.layer01.safetensors").totals()
    assert inner["layer"] == "1"
    assert inner["nc4_agreement"] == totals["nc4_agreement"]  # that layer's decisions
    assert inner["ncc_acc"] == totals["ncc_acc"]
    for name in ("val_loss", "val_acc", "val_ppl"):  # the model's, not a layer's
        assert name not in inner
        assert name in json.loads(last)
    assert inner["nc1_cdnv"] != json.loads(last)["nc1_cdnv"]


def test_a_sweep_measures_every_collected_layer_and_draws_them(tmp_path):
    grid = tmp_path / "g.toml"
    text = GRID.replace("depths = [1]", "depths = [2]").replace(
        "[collect]\n", '[collect]\nlayers = "all"\n'
    )
    grid.write_text(text)
    out = tmp_path / "out"
    assert main(["sweep", str(grid), "--out", str(out)]) == 0
    runs = len(tomllib.loads(text)["train"]["widths"]) * 3  # 1 + 2 models of each width
    model = out / "runs" / "Stories-02x0032_02d" / "epoch-1"
    assert sorted(p.name for p in model.glob("metrics*.json")) == [
        "metrics.json", "metrics.layer00.json", "metrics.layer01.json",
    ]  # fmt: skip
    layers = pd.read_csv(out / "layers.csv")
    assert len(layers) == runs * 3  # layers 0, 1 and the last (index 2 = depth)
    assert sorted(layers["layer_index"].unique()) == [0, 1, 2]
    assert layers.loc[layers["layer_index"] < 2, "val_loss"].isna().all()
    results = pd.read_csv(out / "results.csv")
    assert len(results) == runs and set(results["layer"].astype(str)) == {"last"}
    assert (out / "figures" / "layers.png").is_file()
    assert "Layer-wise collapse" in (out / "report.html").read_text()
