"""Progress bars for long work: rate and ETA on a terminal, quiet in logs and CI."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm


def progress(
    iterable: Iterable | None = None,
    *,
    total: int | float | None = None,
    desc: str = "",
    unit: str = "it",
    unit_scale: bool = False,
    initial: int = 0,
    **kwargs: Any,
) -> tqdm:
    """A tqdm bar shown only when stderr is a terminal (so logs and CI stay clean) and
    not ``disable``d (e.g. on every rank but 0)."""
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=unit_scale,
        initial=initial,
        disable=kwargs.pop("disable", False) or not sys.stderr.isatty(),
        dynamic_ncols=True,
        smoothing=0.05,
        **kwargs,
    )
