"""Everything the tool writes is readable by whoever may read the directory: files get the
mode ``open()`` gives under the umask (0644 under 022), directories ``mkdir()``'s (0755),
even those that safetensors, mkstemp or mkdtemp made owner-only."""

import contextlib
import os
import stat
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from lingcollapse.cli import main
from lingcollapse.io import usual_mode
from lingcollapse.train import checkpoint
from tiny import tiny_model

GRID = """
name = "modes"
[data]
corpus = "embedded"
tokens = 12_000
seq_len = 32
vocab_size = 300
[train]
widths = [8]
depths = [1]
epochs = [3]
measure_epochs = [1, 2, 3]
options = { batch_size = 32, lr = 3e-3, allow_any_size = true }
[collect]
batch_size = 64
"""


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def modes(root: Path) -> dict[str, int]:
    """The permission bits of every file and directory under ``root`` (links skipped)."""
    return {
        str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode)
        for p in [root, *root.rglob("*")]
        if not p.is_symlink()
    }


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("modes")
    (tmp / "grid.toml").write_text(GRID)
    with umask(0o022):
        assert main(["sweep", str(tmp / "grid.toml"), "--out", str(tmp / "out")]) == 0
    return tmp / "out"


def test_a_sweeps_every_output_takes_the_umask_mode(swept):
    """Trained weights (the run's model/ and epoch-1/), stats, metrics, data, tables."""
    run = swept / "runs" / "Stories-01x0008_03d"
    found = modes(swept)
    for name in [
        "runs/Stories-01x0008_03d/model/model.safetensors",
        "runs/Stories-01x0008_03d/epoch-1/model.safetensors",
        "runs/Stories-01x0008_03d/stats/train.safetensors",
        "runs/Stories-01x0008_03d/epoch-1/stats/validation.safetensors",
        "runs/Stories-01x0008_03d/metrics.json",
        "runs/Stories-01x0008_03d/epoch-1/metrics.json",
        "runs/Stories-01x0008_03d/classes.parquet",
        "results.csv",
        "report.html",
    ]:
        assert found[name] == 0o644, (name, oct(found[name]))
    for name in ["runs/Stories-01x0008_03d/epoch-1", "runs/Stories-01x0008_03d/model", "data"]:
        assert found[name] == 0o755, (name, oct(found[name]))
    assert (run / "model" / "model.safetensors").stat().st_size > 0
    wrong = {k: oct(v) for k, v in found.items() if v != (0o755 if (swept / k).is_dir() else 0o644)}
    assert not wrong, wrong  # nothing anywhere is owner-only


def test_a_checkpoint_takes_the_umask_mode_too(tmp_path):
    """Under umask 027 files are 0640 and dirs 0750: the mode comes from the umask."""
    model = tiny_model("gpt2")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.zeros(1, 4, dtype=torch.long)).logits.sum().backward()
    optimizer.step()  # moments to save
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    with umask(0o027):
        path = checkpoint.save(tmp_path / "ckpt", 1, model, optimizer, schedule, {})
    assert modes(path) == {
        ".": 0o750,
        "model.safetensors": 0o640,
        "optimizer.safetensors": 0o640,
        "state.json": 0o640,
    }


def test_safetensors_alone_writes_owner_only_and_usual_mode_fixes_it(tmp_path):
    """Why the fix is needed: safetensors' save_file makes 0600 whatever the umask (0.8
    does; 0.4.3, the floor, still followed the umask). usual_mode gives the umask's mode
    to what save_file wrote, and to an owner-only file whichever version made it."""
    weights = tmp_path / "w.safetensors"
    with umask(0o022):
        save_file({"w": torch.zeros(2)}, str(weights))
        # 0600 seen with safetensors 0.8, 0644 with 0.4.3
        assert stat.S_IMODE(weights.stat().st_mode) in (0o600, 0o644)
        usual_mode(weights)
        assert stat.S_IMODE(weights.stat().st_mode) == 0o644
        os.chmod(weights, 0o600)
        usual_mode(weights)
    assert stat.S_IMODE(weights.stat().st_mode) == 0o644


def test_usual_mode_walks_a_dir_and_leaves_links_alone(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("x")
    os.chmod(outside, 0o600)
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "f").write_text("y")
    os.chmod(tree / "sub" / "f", 0o600)
    os.chmod(tree / "sub", 0o700)
    (tree / "link").symlink_to(outside)
    with umask(0o002):
        usual_mode(tree)
    assert modes(tree) == {".": 0o775, "sub": 0o775, "sub/f": 0o664}
    assert stat.S_IMODE(outside.stat().st_mode) == 0o600  # not followed
