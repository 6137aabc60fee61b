"""The API reference builds from the docstrings, offline, with no warning."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

import lingcollapse

pytest.importorskip("sphinx")

DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.fixture(scope="module")
def html(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("docs")
    argv = ["-b", "html", "-W", "--keep-going", "-q", "-d", str(out / "doctrees")]
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", *argv, str(DOCS), str(out / "html")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr  # -W: any warning fails the build
    return out / "html"


def objects(page: Path) -> list[str]:
    """The ids of the Python objects a page documents."""
    return re.findall(r'<dt class="sig sig-object py" id="([^"]+)"', page.read_text())


def test_every_page_is_built(html):
    for page in ("index", "api", "metrics", "stats", "cli"):
        assert (html / f"{page}.html").is_file(), page
    assert f"lingcollapse {lingcollapse.__version__}" in (html / "index.html").read_text()


def test_the_python_api_is_documented_at_the_top_level(html):
    """Whatever the package exports: load_stats, measure, collect_embeddings, …"""
    found = objects(html / "api.html")
    exported = [n for n in getattr(lingcollapse, "__all__", []) if n != "__version__"]
    assert exported, "lingcollapse exports nothing"
    for name in exported:
        assert f"lingcollapse.{name}" in found, name


def test_metrics_and_statistics_are_documented(html):
    metrics, stats = objects(html / "metrics.html"), objects(html / "stats.html")
    assert "lingcollapse.metrics.pairwise.pairwise_metrics" in metrics
    assert "lingcollapse.metrics.names.arrow" in metrics
    assert "lingcollapse.stats.classes.ClassAccumulator.update" in stats
    assert "lingcollapse.stats.files.save_stats" in stats


def test_the_cli_reference_is_each_commands_help(html):
    from lingcollapse.cli import build_parser

    page = (html / "cli.html").read_text()
    titles = re.findall(r"<h[23]>(lingcollapse [a-z ]+)<a", page)
    assert titles[:2] == ["lingcollapse data", "lingcollapse data prepare"]
    for command in ("train", "collect", "stats merge", "measure", "analyze", "sweep", "demo"):
        assert f"lingcollapse {command}" in titles, command
    sub = next(a for a in build_parser()._actions if getattr(a, "choices", None))
    usage = sub.choices["measure"].format_usage().split()[1:3]  # "lingcollapse measure"
    assert " ".join(usage) in page
    assert "--cdnv-control" in page and "usage: lingcollapse sweep" in page
