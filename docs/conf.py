"""Sphinx configuration: the API reference from the docstrings, built offline.

``make docs`` builds it into ``docs/_build/html``; ``tests/test_docs.py`` builds it with
warnings as errors. Nothing is fetched (no intersphinx, no remote theme, no images).
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))  # the checkout's code, installed or not
sys.path.insert(0, str(HERE / "_ext"))

import lingcollapse  # noqa: E402

project = "lingcollapse"
author = "the lingcollapse authors"
copyright = "2026, the lingcollapse authors"
release = version = lingcollapse.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",  # the Args:/Returns: sections of the Python API
    "cli_help",  # the command line reference, from the parser itself
]

# Only the checkout's own pages; generated output and notes stay out.
exclude_patterns = ["_build", "_ext"]
root_doc = "index"

# The docstrings are reStructuredText with Google-style sections in places.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": False}
# Heavy optional imports are not needed to read the docstrings.
autodoc_mock_imports = ["submitit", "wandb", "mlflow", "tensorboard"]
# The top level re-exports classes that their own modules' pages document too
# (lingcollapse.ClassStats is lingcollapse.stats.classes.ClassStats): a bare type name
# then has two targets, both right. Only that ambiguity is silenced; every other warning
# fails the build (tests/test_docs.py builds with -W).
suppress_warnings = ["ref.python"]

html_theme = "alabaster"  # ships with Sphinx: no download
html_theme_options = {"description": "Neural collapse in (large) language models"}
html_static_path: list[str] = []
html_show_sourcelink = False
