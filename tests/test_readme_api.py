"""The README's "Python API" example runs as written, offline, and equals the CLI path."""

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lingcollapse.cli import main
from lingcollapse.metrics.names import METRICS

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    """The first python block of the README's "## Python API" section."""
    text = README.read_text()
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert blocks, "the Python API section has no python block"
    return blocks[0]


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("notebook")
    namespace: dict = {"__name__": "__readme__"}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        exec(compile(readme_example(), str(README), "exec"), namespace)
    namespace["cwd"] = cwd
    return namespace


def test_the_example_runs_and_the_model_collapses_some(example):
    m, metrics = example["m"], example["metrics"]
    assert metrics == m.to_dict() and "content_sha256" not in metrics
    assert metrics["n_classes"] == 64 and metrics["n_samples"] == 8 * 16 * 31
    assert metrics["val_loss"] < 0.6 * np.log(64)  # it learned the toy language
    assert 0.5 < metrics["nc4_agreement"] <= 1 and metrics["nc3_duality_mean"] > 0.5
    classes = m.classes
    assert isinstance(classes, pd.DataFrame) and len(classes) == 64
    assert classes["count"].sum() == metrics["n_samples"]
    assert classes["val_count"].sum() == metrics["n_val_samples"] == 2 * 16 * 31
    assert "nc1_cdnv" in repr(m) and "↓" in repr(m)
    saved = json.loads((example["cwd"] / "measured" / "metrics.json").read_text())
    assert saved.pop("content_sha256") and saved == metrics
    assert len(pd.read_parquet(example["cwd"] / "measured" / "classes.parquet")) == 64


def test_the_example_equals_the_command_line_on_the_same_data(example, tmp_path, capsys):
    """The model saved, the batches packed into a data dir: collect + measure by the CLI
    give the metrics the notebook got."""
    model, train, val = example["model"], example["train_batches"], example["val_batches"]
    model.save_pretrained(tmp_path / "model")
    data = tmp_path / "data"
    data.mkdir()
    for split, batches in (("train", train), ("validation", val)):
        np.save(data / f"{split}.npy", torch.cat(batches).numpy().astype(np.int32))
    stats = tmp_path / "run" / "stats"
    common = [str(tmp_path / "model"), "--data", str(data), "--batch-size", "16"]
    assert main(["collect", *common, "--out", str(stats / "train.safetensors")]) == 0
    assert main(["collect", *common, "--split", "validation", "--out",
                 str(stats / "validation.safetensors"),
                 "--train-stats", str(stats / "train.safetensors")]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["measure", str(stats / "train.safetensors"), "--json", "--classifier",
                 str(tmp_path / "model"), "--out", str(tmp_path / "out")]) == 0  # fmt: skip
    cli = json.loads(capsys.readouterr().out)
    notebook = example["metrics"]
    compared = [name for name in METRICS if name in cli]
    assert len(compared) >= 20 and compared == [n for n in METRICS if n in notebook]
    for name in compared:
        assert notebook[name] == pytest.approx(cli[name], rel=1e-9, abs=1e-12), name
