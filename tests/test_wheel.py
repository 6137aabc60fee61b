"""The wheel is a package that works outside the checkout: it holds the licence, the
bundled grids, the example statistics and the report's assets, and, installed on its
own, runs `lingcollapse sweep paper --plan` from any directory."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import lingcollapse

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "lingcollapse"
# what a wheel build reads; the root `configs` link comes along to show it does no harm
SOURCES = ["pyproject.toml", "README.md", "LICENSE", "src", "configs"]
SKIP = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the checkout (a build writes build/ and egg-info)."""
    tmp = tmp_path_factory.mktemp("wheel")
    tree = tmp / "tree"
    for name in SOURCES:
        source = ROOT / name
        if source.is_symlink():
            (tree / name).symlink_to(os.readlink(source))
        elif source.is_dir():
            shutil.copytree(source, tree / name, ignore=SKIP)
        else:
            tree.mkdir(exist_ok=True)
            shutil.copy2(source, tree / name)
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    done = subprocess.run(
        [*pip, "--wheel-dir", str(tmp / "dist"), str(tree)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (found,) = (tmp / "dist").glob("*.whl")
    return found


def package_data() -> set[str]:
    """Every file of the package that is not Python source, as the wheel names it."""
    return {
        str(p.relative_to(PACKAGE.parent))
        for p in PACKAGE.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    }


def test_the_wheel_holds_the_license_grids_examples_and_assets(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert wheel.name == f"lingcollapse-{lingcollapse.__version__}-py3-none-any.whl"
    info = f"lingcollapse-{lingcollapse.__version__}.dist-info"
    assert {f"{info}/licenses/LICENSE", f"{info}/LICENSE"} & names
    for grid in ("paper", "pythia", "llms", "demo", "demo-quick"):
        assert f"lingcollapse/configs/{grid}.toml" in names, grid
    for example in ("train", "validation", "classifier"):
        assert f"lingcollapse/examples/{example}.safetensors" in names, example
    assert "lingcollapse/sweep/bundled.py" in names
    data = package_data()
    assert {"lingcollapse/configs/paper.toml", "lingcollapse/examples/train.safetensors"} <= data
    assert not data - names, data - names  # every data file, report assets included
    metadata = zipfile.ZipFile(wheel).read(f"{info}/METADATA").decode()
    assert f"Version: {lingcollapse.__version__}\n" in metadata  # from __version__


def test_the_installed_wheel_plans_the_paper_from_anywhere(wheel, tmp_path):
    """Installed alone into a directory put first on the path (the checkout's editable
    install comes after it), run from a directory far from any configs/."""
    target = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "-q"]
    done = subprocess.run(
        [*pip, "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    where = subprocess.run(
        [sys.executable, "-c", "import lingcollapse; print(lingcollapse.__file__)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(target), where.stdout + where.stderr
    plan = subprocess.run(
        [str(target / "bin" / "lingcollapse"), "sweep", "paper", "--plan"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert plan.returncode == 0, plan.stderr
    assert "170 runs to train, 230 models to measure" in plan.stdout
    assert not (elsewhere / "sweeps").exists()  # a plan makes nothing
