"""The files of a package: licence, changelog and citation agree with the code."""

import re
import tomllib
from pathlib import Path

import pytest

import lingcollapse

ROOT = Path(__file__).resolve().parent.parent
KINDS = {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}  # Keep a Changelog


def test_the_version_is_written_once():
    """pyproject reads it from lingcollapse.__version__ (setuptools' attr:), never twice."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    attr = project["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "lingcollapse.__version__"
    assert re.fullmatch(r"\d+\.\d+\.\d+", lingcollapse.__version__)


def test_the_license_is_the_one_pyproject_names():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    text = (ROOT / "LICENSE").read_text()
    assert project["license"]["text"] == "MIT"
    assert text.startswith("MIT License\n") and "Copyright (c) 2026 the lingcollapse" in text


def test_the_changelog_has_this_version_and_an_unreleased_section():
    text = (ROOT / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## \[([^\]]+)\]", text, flags=re.MULTILINE)
    assert headings[0] == "Unreleased"
    assert lingcollapse.__version__ in headings
    for section in re.split(r"^## ", text, flags=re.MULTILINE)[1:]:
        kinds = re.findall(r"^### (\w+)", section, flags=re.MULTILINE)
        assert kinds and set(kinds) <= KINDS, section[:40]


def test_the_citation_names_the_tool_and_the_paper():
    yaml = pytest.importorskip("yaml")
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    for key in ("cff-version", "message", "title", "authors"):  # the schema's required keys
        assert cff[key], key
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software"
    assert str(cff["version"]) == lingcollapse.__version__
    assert cff["license"] == "MIT"
    paper = cff["preferred-citation"]
    assert paper["title"] == "Linguistic Collapse: Neural Collapse in (Large) Language Models"
    assert [(a["given-names"], a["family-names"]) for a in paper["authors"]] == [
        ("Robert", "Wu"),
        ("Vardan", "Papyan"),
    ]
    assert paper["year"] == 2024 and "NeurIPS 2024" in paper["collection-title"]
    assert any(i["value"] == "arXiv:2405.17767" for i in paper["identifiers"])
