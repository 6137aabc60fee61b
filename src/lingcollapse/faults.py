"""Fault injection for tests: die by ``SIGKILL`` at a named point of the pipeline.

``LINGCOLLAPSE_FAULT=PATTERN[:N]`` kills this process the N-th time (default 1) it
reaches a point whose name matches PATTERN (``fnmatch``: ``*`` matches across ``/``).
The points are where an interruption is most likely to leave something half done:

- ``write:PATH`` — :func:`lingcollapse.io.atomic_path`, the data written and fsynced
  but not yet renamed to PATH (so every atomic file: checkpoints, stats, metrics.json);
- ``wrote:PATH`` — the same, just after the rename;
- ``data.chunks`` — ``data prepare``, a split's ``.npy`` half written;
- ``write-dir:PATH`` — ``data prepare``, the finished data dir not yet renamed to PATH;
- ``collect.batch`` — ``collect``, after every batch (between checkpoints);
- ``stage:NAME`` — ``sweep``, after each stage (``train``, ``collect``, ``measure`` …).

Unset (always, outside tests) a point costs one environment lookup.
"""

from __future__ import annotations

import fnmatch
import os
import signal

VARIABLE = "LINGCOLLAPSE_FAULT"
_seen: dict[str, int] = {}  # spec → matching points reached in this process


def point(name: str) -> None:
    """Reach the point ``name``; die here if ``$LINGCOLLAPSE_FAULT`` says so."""
    spec = os.environ.get(VARIABLE)
    if not spec:
        return
    pattern, _, nth = spec.rpartition(":")
    if not nth.isdigit():  # no count: the first time
        pattern, nth = spec, "1"
    if not fnmatch.fnmatchcase(name, pattern):
        return
    _seen[spec] = _seen.get(spec, 0) + 1
    if _seen[spec] == int(nth):
        os.kill(os.getpid(), signal.SIGKILL)
