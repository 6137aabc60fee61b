"""A corpus: named splits of documents (sequences of strings), plus where they came from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from lingcollapse.errors import UserError


@dataclass
class Corpus:
    """``splits`` maps ``train``/``validation`` to documents: lists, or anything with
    ``len`` and slicing that yields strings (a ``datasets`` column)."""

    name: str
    splits: dict[str, Sequence[str]]
    source: dict = field(default_factory=dict)  # recorded in meta.json

    def check(self) -> None:
        if len(self.splits.get("train", ())) == 0:
            raise UserError(f"corpus {self.name} is empty: it has no training documents")


def split_documents(docs: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """A seeded random ``fraction`` of ``docs`` for validation (at least one when there
    are two or more), the rest for training; each keeps the corpus order."""
    n = len(docs)
    n_val = min(n - 1, max(1, round(fraction * n))) if n >= 2 and fraction > 0 else 0
    val = np.zeros(n, dtype=bool)
    val[np.random.default_rng(seed).permutation(n)[:n_val]] = True  # (n,)
    return [d for d, v in zip(docs, val, strict=True) if not v], [
        d for d, v in zip(docs, val, strict=True) if v
    ]
