"""Progress of long work: a tqdm bar on a terminal, a log line every minute off it.

On a terminal (stderr a TTY) :func:`progress` is a tqdm bar with rate and ETA. Off one
(SLURM, ``nohup``, CI) a bar's redraws are noise in a log file, so it logs one line every
``--log-every`` seconds instead, through :mod:`logging`, and a last line when the work
ends (work shorter than the interval says nothing)::

    collect train: 1,024/8,192 seq (12.5%) 310 seq/s, ETA 0:00:23
    collect train: done 8,192 seq in 0:00:26 (312 seq/s)

The interval is read from ``$LINGCOLLAPSE_LOG_EVERY`` (seconds, default 60; 0: off), which
each long command's ``--log-every`` sets while it runs (:func:`add_log_every`), so the
value reaches every bar without being passed down, and a sweep's SLURM jobs inherit it.
"""

from __future__ import annotations

import argparse
import functools
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from tqdm.auto import tqdm

from lingcollapse.errors import UserError

log = logging.getLogger(__name__)

LOG_EVERY_ENV = "LINGCOLLAPSE_LOG_EVERY"
DEFAULT_LOG_EVERY = 60.0  # seconds


def progress(
    iterable: Iterable | None = None,
    *,
    total: int | float | None = None,
    desc: str = "",
    unit: str = "it",
    unit_scale: bool = False,
    initial: int = 0,
    **kwargs: Any,
) -> tqdm | LogProgress:
    """A tqdm bar when stderr is a terminal, else a :class:`LogProgress` that logs a line
    every :func:`log_every` seconds; nothing at all when ``disable``d (e.g. on every rank
    but 0). Both take the same calls: ``update``, ``set_postfix_str``, ``close``, ``with``
    and iteration."""
    disable = kwargs.pop("disable", False)
    if not _on_terminal():
        every = 0.0 if disable else log_every()
        return LogProgress(iterable, total, desc, unit, unit_scale, initial, every)
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=unit_scale,
        initial=initial,
        disable=disable,
        dynamic_ncols=True,
        smoothing=0.05,
        **kwargs,
    )


def _on_terminal() -> bool:
    return sys.stderr.isatty()


def log_every() -> float:
    """Seconds between progress lines off a terminal: ``$LINGCOLLAPSE_LOG_EVERY``, else
    :data:`DEFAULT_LOG_EVERY` (0: off)."""
    value = os.environ.get(LOG_EVERY_ENV, "")
    if not value.strip():
        return DEFAULT_LOG_EVERY
    try:
        return parse_seconds(value)
    except UserError as err:
        raise UserError(f"${LOG_EVERY_ENV}: {err}") from None


def parse_seconds(value: str | float) -> float:
    """``--log-every``'s value: seconds ≥ 0, finite."""
    try:
        seconds = float(value)
    except ValueError:
        raise UserError(
            f"--log-every takes seconds (e.g. 60, or 0 for off), not {value!r}"
        ) from None
    if not (seconds >= 0 and math.isfinite(seconds)):
        raise UserError(f"--log-every must be a number of seconds ≥ 0, not {value!r}")
    return seconds


def add_log_every(parser: argparse.ArgumentParser) -> None:
    """Give a command ``--log-every SECONDS``; call it after ``set_defaults(func=…)``.

    The value holds while the command runs (in the environment, restored after), so
    every :func:`progress` of the command and of the jobs it starts reads it."""
    parser.add_argument(
        "--log-every",
        type=parse_seconds,
        metavar="SECONDS",
        help="off a terminal (SLURM, nohup), log a progress line with rate and ETA every "
        f"SECONDS (default {DEFAULT_LOG_EVERY:g}, or ${LOG_EVERY_ENV}; 0: off)",
    )
    parser.set_defaults(func=functools.partial(_with_log_every, parser.get_default("func")))


def _with_log_every(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    with log_every_set(args.log_every):
        return func(args)


@contextmanager
def log_every_set(seconds: float | None) -> Iterator[None]:
    """``$LINGCOLLAPSE_LOG_EVERY`` = ``seconds`` inside the block (``None``: unchanged)."""
    if seconds is None:
        yield
        return
    before = os.environ.get(LOG_EVERY_ENV)
    os.environ[LOG_EVERY_ENV] = f"{seconds:g}"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(LOG_EVERY_ENV, None)
        else:
            os.environ[LOG_EVERY_ENV] = before


class LogProgress:
    """tqdm's interface, logging a line every ``every`` seconds instead of drawing a bar
    (``every`` 0: silent). The rate counts the work done since it started, so a resumed
    run's ETA is not flattered by its ``initial`` work."""

    def __init__(self, iterable, total, desc, unit, unit_scale, initial, every: float):
        self.iterable, self.total, self.desc = iterable, total, desc
        self.unit, self.unit_scale, self.every = unit, unit_scale, every
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            self.total = len(iterable)
        self.n = self.initial = initial
        self.postfix = ""
        self.start = self.last = time.monotonic()
        self.due: float | None = None  # when the line not yet said fell due
        self.closed = False

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, kind, value, tb) -> None:
        if kind is None:
            self.close()
        else:  # the error is the one line to say; no "done" after it
            self.closed = True

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def update(self, n: int | float = 1) -> None:
        """Count ``n``; a line falls due every ``every`` seconds. It is said at the next
        call, so a postfix set right after this update is in it."""
        self._say_due()
        self.n += n
        now = time.monotonic()
        if self.every and now - self.last >= self.every:
            self.last = self.due = now

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = s
        self._say_due()

    def _say_due(self) -> None:
        if self.due is not None:
            log.info("%s", self.line(self.due))
            self.due = None

    def close(self) -> None:
        """Log the last line (once): what was done, in what time, at what rate; only
        after work long enough to be reported on (``every`` seconds or more)."""
        if self.closed:
            return
        self.closed = True
        self.due = None  # the last line says it all
        now = time.monotonic()
        if self.every and now - self.start >= self.every:
            log.info("%s", self.line(now, done=True))

    def line(self, now: float, done: bool = False) -> str:
        """``desc: n/total unit (p%) rate, ETA h:mm:ss[, postfix]``, or at the end
        ``desc: done n unit in h:mm:ss (rate)``."""
        elapsed = now - self.start
        rate = (self.n - self.initial) / elapsed if elapsed > 0 else 0.0
        speed = f"{self._amount(rate)} {self.unit}/s"
        head = f"{self.desc}: " if self.desc else ""
        tail = f", {self.postfix}" if self.postfix else ""
        if done:
            took = _clock(elapsed)
            return f"{head}done {self._amount(self.n)} {self.unit} in {took} ({speed}){tail}"
        if not self.total:
            return f"{head}{self._amount(self.n)} {self.unit} {speed}{tail}"
        share = f"({100 * self.n / self.total:.1f}%)"
        left = (self.total - self.n) / rate if rate > 0 else math.inf
        eta = _clock(left) if math.isfinite(left) else "?"
        amount = f"{self._amount(self.n)}/{self._amount(self.total)}"
        return f"{head}{amount} {self.unit} {share} {speed}, ETA {eta}{tail}"

    def _amount(self, x: float) -> str:
        if self.unit_scale:
            return tqdm.format_sizeof(x)
        return f"{x:,.0f}" if x >= 10 or float(x).is_integer() else f"{x:.2g}"


def _clock(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))
