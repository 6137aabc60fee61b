"""The grids bundled with the package, found by name: `lingcollapse sweep paper`."""

import os
from pathlib import Path

import pytest

from lingcollapse.cli import main
from lingcollapse.errors import UserError
from lingcollapse.sweep import bundled

ROOT = Path(__file__).resolve().parent.parent


def test_the_bundled_grids_are_the_package_folder():
    assert bundled.names() == ["demo", "demo-quick", "llms", "paper", "pythia"]
    assert bundled.folder() == ROOT / "src" / "lingcollapse" / "configs"
    assert bundled.path("paper.toml") == bundled.path("paper") == bundled.folder() / "paper.toml"


def test_a_clone_sees_them_at_its_root():
    """`configs/` at the root is a link to the package folder, not a second copy."""
    assert (ROOT / "configs").is_symlink()
    assert (ROOT / "configs").resolve() == bundled.folder()


def test_an_existing_file_wins_over_a_bundled_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "paper.toml").write_text('name = "mine"\n')
    assert bundled.resolve("paper.toml") == Path("paper.toml")
    assert bundled.resolve("paper") == bundled.folder() / "paper.toml"  # no such file here
    os.mkdir("pythia")  # a directory is never a grid: the bundled one
    assert bundled.resolve("pythia") == bundled.folder() / "pythia.toml"


def test_paths_are_left_to_load_grid(tmp_path):
    """A path with a directory part is the user's: load_grid reports it as not found."""
    assert bundled.resolve(tmp_path / "paper.toml") == tmp_path / "paper.toml"
    assert bundled.resolve("grid.json") == Path("grid.json")


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("papr", ["'papr' is neither", "did you mean 'paper'?", "demo, demo-quick, llms, paper"]),
        ("demo-quik.toml", ["did you mean 'demo-quick'?"]),
        ("xyz", ["the bundled grids are demo, demo-quick, llms, paper, pythia;"]),
    ],
)
def test_a_near_miss_names_the_bundled_grids(name, words):
    with pytest.raises(UserError) as err:
        bundled.resolve(name)
    assert all(w in str(err.value) for w in words), str(err.value)
    assert "did you mean" not in str(err.value) or name != "xyz"


def test_sweep_by_name_plans_the_papers_grid(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # nowhere near a configs/ dir
    assert main(["sweep", "paper", "--plan"]) == 0
    assert "170 runs to train, 230 models to measure" in capsys.readouterr().out


def test_sweep_list_names_each_grid_with_its_summary(capsys):
    assert main(["sweep", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["demo", "demo-quick", "llms", "paper", "pythia"]
    assert "170 training runs, 230 measured models" in lines[3]
    assert "Pythia 70M–12B" in lines[2] and "memory planner" in lines[2]


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["sweep"], "give a grid"),
        (["sweep", "papr", "--plan"], "did you mean 'paper'?"),
    ],
)
def test_sweep_without_a_grid_is_one_error_line(argv, words, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1 and "Traceback" not in err
