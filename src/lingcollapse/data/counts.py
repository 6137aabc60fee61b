"""Samples per class of a train split: Appendix A's counts and Figure 4's imbalance.

A class is a next token: chunk tokens 1..T−1 are the labels (the first token of a chunk is
never one), so a split of S chunks of T tokens has N = S(T − 1) samples. The counts come
from a data dir (its ``train.npy``, counted in blocks of rows) or from train statistics
(their ``counts``), which hold the same numbers for the sequences they were collected on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lingcollapse.errors import UserError
from lingcollapse.io import read_json

_ROWS = 4096  # chunks counted at a time: a 2 GB split never sits in memory


@dataclass
class ClassCounts:
    """Samples per class (V,), and what the source says of S and T."""

    counts: np.ndarray  # int64 (V,)
    source: Path
    sequences: int | None = None  # S
    seq_len: int | None = None  # T
    corpus: str | None = None
    tokenizer: Path | None = None  # a tokenizer dir to decode classes with

    def summary(self) -> dict:
        """Appendix A's numbers: S, T, N, V, C and samples per class (mean, std over the
        C classes that occur)."""
        seen = self.counts[self.counts > 0].astype(np.float64)
        out = {
            "n_sequences": self.sequences,
            "seq_len": self.seq_len,
            "n_samples": int(self.counts.sum()),
            "vocab_size": int(self.counts.size),
            "n_classes": int(seen.size),
            "samples_per_class_mean": float(seen.mean()) if seen.size else 0.0,
            "samples_per_class_std": float(seen.std()) if seen.size else 0.0,
        }
        if self.corpus:
            out = {"corpus": self.corpus, **out}
        return {k: v for k, v in out.items() if v is not None}


def class_counts(source: str | Path) -> ClassCounts:
    """The counts of a data dir's train split, a train stats file, or a run dir's
    ``stats/train.safetensors``."""
    source = Path(source)
    if (source / "train.npy").is_file():
        return _from_data_dir(source)
    if source.is_dir():
        from lingcollapse.stats.files import stats_path

        source = stats_path(source)  # a run's (or epoch-E/'s) stats/train.safetensors
    if source.is_file() and source.suffix == ".safetensors":
        return _from_stats(source)
    what = "not found" if not source.exists() else "neither a data dir nor train stats"
    raise UserError(
        f"{source} is {what}: give a data dir (with train.npy), a train stats file or a run "
        "dir with stats/train.safetensors"
    )


def _from_data_dir(data: Path) -> ClassCounts:
    from lingcollapse.collect.data import REMAKE, open_split
    from lingcollapse.models.ids import corpus_label

    meta_path = data / "meta.json"
    meta = read_json(meta_path, REMAKE) if meta_path.is_file() else {}
    meta = meta if isinstance(meta, dict) else {}
    vocab = meta.get("vocab_size")
    tokens = open_split(data, "train", int(vocab) if isinstance(vocab, int) else 2**31 - 1)
    size = int(vocab) if isinstance(vocab, int) else int(tokens.max()) + 1
    counts = np.zeros(size, dtype=np.int64)
    for start in range(0, tokens.shape[0], _ROWS):
        block = np.asarray(tokens[start : start + _ROWS, 1:]).ravel()
        counts += np.bincount(block, minlength=size)
    tokenizer = data / "tokenizer"
    return ClassCounts(
        counts,
        data,
        int(tokens.shape[0]),
        int(tokens.shape[1]),
        corpus_label(meta["source"]) if meta.get("source") else None,
        tokenizer if tokenizer.is_dir() else None,
    )


def _from_stats(path: Path) -> ClassCounts:
    from lingcollapse.metrics.job import describe_data
    from lingcollapse.stats.files import load_stats

    stats = load_stats(path, kind="train")
    counts = stats.counts.numpy().astype(np.int64)
    data = describe_data(stats.metadata, int(counts.sum()))
    tokenizer = Path(str(stats.metadata.get("data", ""))) / "tokenizer"
    return ClassCounts(
        counts,
        path,
        data.get("n_sequences"),
        data.get("seq_len"),
        data.get("corpus"),
        tokenizer if stats.metadata.get("data") and tokenizer.is_dir() else None,
    )


def top_classes(counts: ClassCounts, top: int = 500, tokenizer=None) -> list[tuple[int, int, str]]:
    """The ``top`` most frequent classes: (token id, count, text) by falling count (ties
    by id); the text is the tokenizer's where one is given, else the id."""
    order = np.lexsort((np.arange(counts.counts.size), -counts.counts))[:top]
    order = order[counts.counts[order] > 0]
    texts = [tokenizer.decode([int(i)]) if tokenizer is not None else str(i) for i in order]
    return [(int(i), int(counts.counts[i]), t) for i, t in zip(order, texts, strict=True)]


def load_tokenizer_of(counts: ClassCounts):
    """The tokenizer of the counts' data dir, or None (classes shown as ids)."""
    if counts.tokenizer is None:
        return None
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(counts.tokenizer))
    except Exception:  # no usable tokenizer there: ids will do
        return None
