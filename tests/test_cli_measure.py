"""`lingcollapse measure` and `stats merge` end to end, and every bad input of DESIGN §5."""

import json
import logging
import re
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from lingcollapse.cli import main
from lingcollapse.errors import UserError
from lingcollapse.metrics.job import MeasureConfig, measure_files
from lingcollapse.stats import class_stats
from lingcollapse.stats.files import FORMAT, save_stats
from lingcollapse.stats.validation import ValidationAccumulator

V, D = 30, 6


@pytest.fixture
def files(tmp_path):
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, V - 4, (800,), generator=g)
    h = torch.randn(800, D, generator=g) + 3 * torch.randn(V, D, generator=g)[y]
    train = class_stats(h, y, V)
    weight, bias = torch.randn(V, D, generator=g), torch.zeros(V)
    acc = ValidationAccumulator(weight, bias, train)
    acc.update(h[:200], y[:200])
    paths = {k: tmp_path / f"{k}.safetensors" for k in ("train", "validation", "classifier")}
    save_stats(paths["train"], train, model="toy")
    save_stats(paths["validation"], acc.state)
    save_file({"weight": weight, "bias": bias}, paths["classifier"])
    paths["out"] = tmp_path / "out"
    return paths


def measure_args(f, *extra):
    return [
        "measure",
        str(f["train"]),
        "--validation",
        str(f["validation"]),
        "--classifier",
        str(f["classifier"]),
        "--out",
        str(f["out"]),
        *extra,
    ]


def test_measure_json_and_outputs(files, capsys):
    assert main(measure_args(files, "--json")) == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((files["out"] / "metrics.json").read_text())
    assert len(saved.pop("content_sha256")) == 64  # the file's own checksum, not printed
    assert printed == saved
    assert saved["n_classes"] == 26 and saved["model"] == "toy"
    for key in (
        "nc1_cdnv",
        "nc2_equinorm_cov",
        "gnc2_uniformity_cov",
        "unc3_duality_cov",
        "nc4_agreement",
        "val_loss",
        "nc3_zhu_error",
    ):
        assert isinstance(saved[key], float), key
    table = pd.read_parquet(files["out"] / "classes.parquet")
    assert len(table) == 26
    assert table.val_count.sum() == 200


def test_measure_table_has_arrows(files, capsys):
    assert main(measure_args(files)) == 0
    out = capsys.readouterr().out
    assert re.search(r"^nc1_cdnv +↓ ", out, re.M) and re.search(r"^nc4_agreement +↑ ", out, re.M)


def test_preset_and_options_change_the_answer(files, capsys):
    main(measure_args(files, "--json"))
    paper = json.loads(capsys.readouterr().out)
    main(measure_args(files, "--json", "--preset", "papyan"))
    papyan = json.loads(capsys.readouterr().out)
    assert papyan["cdnv_power"] == 0 and papyan["centre"] == "weighted"
    assert papyan["nc1_cdnv"] != paper["nc1_cdnv"]


def _bad_cases(f, tmp):
    good = f["train"].read_bytes()
    garbled = tmp / "garbled.safetensors"
    garbled.write_bytes(b"\x00\x13not a safetensors file at all" * 10)
    truncated = tmp / "truncated.safetensors"
    truncated.write_bytes(good[: len(good) // 2])
    flipped = tmp / "flipped.safetensors"
    data = bytearray(good)
    data[-100] ^= 0x10  # one bit of a mean
    flipped.write_bytes(bytes(data))
    missing_key = tmp / "missing.safetensors"
    save_file(
        {
            "counts": torch.ones(V, dtype=torch.long),
            "means": torch.zeros(V, D, dtype=torch.float64),
        },
        missing_key,
        {"format": FORMAT, "kind": "train"},
    )
    shape = tmp / "shape.safetensors"
    save_file(
        {
            "counts": torch.ones(V, dtype=torch.long),
            "means": torch.zeros(V, D, dtype=torch.float64),
            "m2": torch.zeros(V + 1, dtype=torch.float64),
        },
        shape,
        {"format": FORMAT, "kind": "train"},
    )
    stats = class_stats(torch.randn(50, D), torch.arange(50) % V, V)
    stats.means[3, 0] = float("nan")
    nan = tmp / "nan.safetensors"
    save_stats(nan, stats)
    stats = class_stats(torch.randn(50, D), torch.arange(50) % V, V)
    stats.counts[4] = -2
    negative = tmp / "negative.safetensors"
    save_stats(negative, stats)
    wide = tmp / "wide.safetensors"
    save_file({"weight": torch.randn(V, D + 2)}, wide)
    other = tmp / "other.safetensors"
    save_stats(other, class_stats(torch.randn(100, D), torch.arange(100) % V, V))
    out = str(f["out"])
    return {
        "missing file": ["measure", str(tmp / "nope.safetensors"), "--out", out],
        "garbled": ["measure", str(garbled), "--out", out],
        "truncated": ["measure", str(truncated), "--out", out],
        "bit flip": ["measure", str(flipped), "--out", out],
        "missing key": ["measure", str(missing_key), "--out", out],
        "shape mismatch": ["measure", str(shape), "--out", out],
        "NaN in kept class": ["measure", str(nan), "--out", out],
        "negative counts": ["measure", str(negative), "--out", out],
        "classifier width": ["measure", str(f["train"]), "--classifier", str(wide), "--out", out],
        "too few classes": ["measure", str(f["train"]), "--min-count", "100000", "--out", out],
        "other means": ["measure", str(other), "--validation", str(f["validation"]), "--out", out],
        "validation as train": ["measure", str(f["validation"]), "--out", out],
        "unknown preset": ["measure", str(f["train"]), "--preset", "papyn", "--out", out],
        "merge of other kinds": [
            "stats",
            "merge",
            str(f["train"]),
            str(f["validation"]),
            "--out",
            str(tmp / "m.safetensors"),
        ],
    }


def test_bad_inputs_exit_2_with_one_error_line_and_keep_outputs(files, tmp_path, capsys):
    assert main(measure_args(files)) == 0
    before = (files["out"] / "metrics.json").read_bytes()
    capsys.readouterr()
    for name, argv in _bad_cases(files, tmp_path).items():
        assert main(argv) == 2, name
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), (name, err)
        assert (files["out"] / "metrics.json").read_bytes() == before, name
    assert not (tmp_path / "m.safetensors").exists()
    assert not list(files["out"].glob("*.tmp"))


# The library entry the CLI and the sweep share: MeasureConfig → measure_files.


def test_measure_files_gives_what_the_cli_gives(files, tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO)
    cli_out, lib_out = tmp_path / "cli", tmp_path / "lib"
    # no --validation: the sibling validation.safetensors is found, with a note
    argv = ["measure", str(files["train"]), "--classifier", str(files["classifier"])]
    assert main([*argv, "--out", str(cli_out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    said = [r.getMessage() for r in caplog.records if r.name == "lingcollapse.cli.measure"]
    cfg = MeasureConfig(files["train"], classifier=str(files["classifier"]), out=lib_out)
    done = measure_files(cfg)
    assert done.metrics == printed and done.out == lib_out
    assert (lib_out / "metrics.json").read_bytes() == (cli_out / "metrics.json").read_bytes()
    pd.testing.assert_frame_equal(
        pd.read_parquet(lib_out / "classes.parquet"), pd.read_parquet(cli_out / "classes.parquet")
    )
    assert done.notes == [f"using validation stats {files['validation']}"]
    assert said == done.notes + [f"warning: {w}" for w in done.warnings]
    assert done.metrics["val_loss"] > 0  # the sibling's validation stats were used


def test_measure_files_returns_the_warnings_the_cli_logs(tmp_path, capsys, caplog):
    g = torch.Generator().manual_seed(1)
    y = torch.arange(40) % 4
    h = torch.randn(40, D, generator=g)
    h[y == 1] = h[y == 0]  # classes 0 and 1: the same samples, so coinciding means
    stats = tmp_path / "train.safetensors"
    save_stats(stats, class_stats(h, y, 4), model="twins")
    done = measure_files(MeasureConfig(stats, out=tmp_path / "lib", device="cpu"))
    assert done.metrics["n_degenerate_pairs"] == 1
    assert any(w.startswith("1 pair(s) of classes have coinciding means") for w in done.warnings)
    caplog.set_level(logging.INFO)
    assert main(["measure", str(stats), "--out", str(tmp_path / "cli"), "--device", "cpu"]) == 0
    said = [
        r.getMessage()
        for r in caplog.records
        if r.name == "lingcollapse.cli.measure" and r.levelno == logging.WARNING
    ]
    assert said == [f"warning: {w}" for w in done.warnings]


@pytest.mark.parametrize(
    "option, message",
    [
        ({"preset": "papyn"}, "unknown preset 'papyn'"),
        ({"min_count": 0}, "--min-count must be at least 1, not 0"),
        ({"cdnv_power": -1.0}, "--cdnv-power must be ≥ 0"),
        ({"tile": 0}, "--tile must be positive, not 0"),
        ({"device": "tpu"}, "unknown device 'tpu'"),
        ({"device": "cuda:x"}, "unknown device 'cuda:x'"),
        ({"out": "FILE"}, "is a file: give a dir"),
    ],
)
def test_measure_config_refuses_bad_options_without_reading_inputs(tmp_path, option, message):
    if option.get("out") == "FILE":
        option = {"out": tmp_path / "f"}
        option["out"].write_text("x")
    with pytest.raises(UserError, match=re.escape(message)):
        MeasureConfig(tmp_path / "nope.safetensors", **option)


def test_measure_config_of_files_not_yet_made(tmp_path):
    """What a sweep validates before any work: paths that a later stage makes, and a
    GPU that is on the node the work runs on, not necessarily here."""
    cfg = MeasureConfig(
        str(tmp_path / "runs/a/stats/train.safetensors"),
        validation=str(tmp_path / "v.safetensors"),
        out=str(tmp_path / "runs/a"),
        device="cuda:1",
        preset="papyan",
        min_count=2,
    )
    assert cfg.train_stats == tmp_path / "runs/a/stats/train.safetensors"
    assert isinstance(cfg.validation, Path) and isinstance(cfg.out, Path)
    assert cfg.convention().centre == "weighted" and cfg.convention().min_count == 2
    assert list(tmp_path.iterdir()) == []  # checked, nothing made


def _strict(text: str):
    """Parse as strict JSON: NaN, Infinity and -Infinity are not JSON."""

    def refuse(name):
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def test_json_outputs_are_strict_json_with_null_for_nan(files, tmp_path, capsys, monkeypatch):
    """metrics.json and `measure --json` write NaN and ±Inf as null (a strict parser
    refuses bare NaN, which Python's json writes by default)."""
    from lingcollapse.cli import measure as cli_measure
    from lingcollapse.io import to_json, write_json

    value = {"a": float("nan"), "b": [float("inf"), -float("inf"), 1.5], "c": {"d": float("nan")}}
    assert _strict(to_json(value)) == {"a": None, "b": [None, None, 1.5], "c": {"d": None}}
    write_json(tmp_path / "x.json", value, checksum=True)
    assert _strict((tmp_path / "x.json").read_text())["a"] is None
    real = cli_measure.measure_files

    def with_nan(cfg):  # a metric that comes out undefined, as it can (e.g. a CoV of 0/0)
        done = real(cfg)
        done.metrics["unc3_duality_cov"] = float("nan")
        return done

    monkeypatch.setattr(cli_measure, "measure_files", with_nan)
    capsys.readouterr()
    assert main(measure_args(files, "--json")) == 0
    printed = _strict(capsys.readouterr().out)
    assert printed["unc3_duality_cov"] is None and printed["nc1_cdnv"] > 0
    _strict((files["out"] / "metrics.json").read_text())
