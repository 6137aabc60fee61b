"""``.. lingcollapse-cli::``: every subcommand's ``--help``, as the command prints it.

The reference is generated from the parser the command line builds
(:func:`lingcollapse.cli.build_parser`), so it cannot drift from the code: a section per
command (nested ones such as ``data prepare`` included), each with its help text.
"""

from __future__ import annotations

import argparse
import os
from contextlib import contextmanager

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

WIDTH = "88"  # argparse wraps help to $COLUMNS


@contextmanager
def _columns(width: str):
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = width
    try:
        yield
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """``(path, parser)`` of every subcommand under ``parser``, depth first, in the order
    they were registered (the order of the pipeline)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from commands(sub, (*path, name))


def rst(parser: argparse.ArgumentParser) -> list[str]:
    """The reST of the reference: the top-level help, then a section per command."""
    lines = [*_block(parser.format_help())]
    for path, sub in commands(parser):
        title = f"lingcollapse {' '.join(path)}"
        mark = "-" if len(path) == 1 else "~"
        lines += [title, mark * len(title), "", *_block(sub.format_help())]
    return lines


def _block(text: str) -> list[str]:
    return [".. code-block:: text", "", *("   " + line for line in text.splitlines()), ""]


class CliHelp(SphinxDirective):
    has_content = False

    def run(self):
        from lingcollapse.cli import build_parser

        with _columns(WIDTH):
            lines = rst(build_parser())
        container = nodes.section()  # a holder: its children (the sections) are returned
        container.document = self.state.document
        nested_parse_with_titles(self.state, StringList(lines, "lingcollapse --help"), container)
        return container.children


def setup(app):
    app.add_directive("lingcollapse-cli", CliHelp)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
