"""The grids shipped with the package, found by name: ``lingcollapse sweep paper``.

They live in ``lingcollapse/configs/`` (package data, so an installed wheel has them; a
clone also sees them as ``configs/`` at its root):

- ``paper``: the paper's 170 runs and 230 models on TinyStories (Wu & Papyan 2024, §3.1);
- ``pythia``: Pythia models across sizes and training checkpoints, nothing to train;
- ``llms``: real LLMs at their size (Pythia 70M–12B at five checkpoints, Llama-3.2 1B
  and 3B, Qwen2.5 0.5B–7B), every layer, each family on its own tokenizer's data, with
  SLURM resources sized by the planner (:mod:`lingcollapse.sweep.resources`);
- ``demo``, ``demo-quick``: what ``lingcollapse demo [--quick]`` runs, offline.

:func:`resolve` turns what a user typed into a grid file: an existing file wins; else a
bare name (``paper`` or ``paper.toml``) is a bundled grid; a near miss is a
:class:`UserError` with a "did you mean …?" and the bundled names.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from lingcollapse.errors import UserError, did_you_mean


def folder() -> Path:
    """The directory of the bundled grids (inside the installed package)."""
    return Path(str(resources.files("lingcollapse") / "configs"))


def names() -> list[str]:
    """The bundled grids' names, sorted: each is ``configs/NAME.toml``."""
    return sorted(p.stem for p in folder().glob("*.toml"))


def path(name: str) -> Path:
    """The file of bundled grid ``name`` (``paper`` or ``paper.toml``)."""
    stem = name.removesuffix(".toml")
    found = folder() / f"{stem}.toml"
    if stem not in names():
        raise UserError(
            f"{name!r} is neither a grid file nor a bundled grid (the bundled grids are "
            f"{', '.join(names())}; or give a .toml file's path){did_you_mean(stem, names())}"
        )
    return found


def summary(name: str) -> str:
    """The first sentence of a bundled grid's leading comment: what it is."""
    words = []
    for line in path(name).read_text().splitlines():
        if not line.startswith("#") or not line.strip("# "):
            break  # the end of the first paragraph
        words.append(line.lstrip("# ").rstrip())
    text = " ".join(words)
    end = text.find(". ")
    return text if end < 0 else text[: end + 1]


def resolve(grid: str | Path) -> Path:
    """The grid file ``grid`` names: an existing path as it is, a bare name not found as a
    path (no directory part) as the bundled grid of that name. Any other path is returned
    unchanged for :func:`lingcollapse.sweep.grid.load_grid` to report."""
    given = Path(grid)
    if given.is_file() or len(given.parts) != 1 or given.suffix not in ("", ".toml"):
        return given
    return path(str(given))
