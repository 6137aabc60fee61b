"""The packed split a collection pass reads: ``{split}.npy``, int32 ``[S, T]``, memory-mapped.

Each chunk of T tokens gives T − 1 samples: the context embedding at position t is a
sample of class ``x_{t+1}``; the first token is never a label and the last position
predicts nothing (paper §3.1, footnote 6), so a split holds N = S(T − 1) samples.

Where the data dir's ``meta.json`` records a split's SHA-256 (``data prepare`` does), the
file is checked against it before use; data dirs made otherwise load unchecked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lingcollapse.errors import UserError, first_line
from lingcollapse.io import file_sha256, read_json

REMAKE = "re-create the data dir with `lingcollapse data prepare --overwrite`, or copy it again"


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` disjoint, contiguous blocks of sequences."""

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, spec: str | None) -> Shard:
        if spec is None:
            return cls()
        try:
            index, count = (int(part) for part in spec.split("/"))
        except ValueError:
            raise UserError(f"--shard must look like I/N (e.g. 0/4), not {spec!r}") from None
        if count < 1 or not 0 <= index < count:
            raise UserError(
                f"--shard {spec}: need 0 ≤ I < N, e.g. 0/{max(count, 1)} … "
                f"{max(count, 1) - 1}/{max(count, 1)}"
            )
        return cls(index, count)

    def within(self, outer: Shard) -> Shard:
        """This shard of ``outer``'s block, as one shard of the whole (for torchrun ranks
        inside a ``--shard`` job)."""
        return Shard(outer.index * self.count + self.index, outer.count * self.count)

    def rows(self, total: int) -> range:
        start = total * self.index // self.count
        stop = total * (self.index + 1) // self.count
        return range(start, stop)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def open_split(data_dir: str | Path, split: str, vocab_size: int) -> np.ndarray:
    """The ``[S, T]`` token array of a split, memory-mapped and checked."""
    path = Path(data_dir) / f"{split}.npy"
    if not Path(data_dir).is_dir():
        what = "is a file, not a directory" if Path(data_dir).exists() else "not found"
        raise UserError(f"data dir {data_dir} {what}: make one with `lingcollapse data prepare`")
    if not path.is_file():
        raise UserError(
            f"{path} not found: the data dir has no {split} split "
            "(re-run `lingcollapse data prepare`)"
        )
    _check_sha256(path, split)
    try:
        tokens = np.load(path, mmap_mode="r", allow_pickle=False)  # never unpickle input
    except (ValueError, OSError) as err:  # numpy takes unknown bytes for a pickle
        why = "not a .npy file" if "pickle" in str(err) else first_line(err)
        raise UserError(f"cannot read {path} as a NumPy array ({why}); {REMAKE}") from None
    if tokens.ndim != 2 or tokens.dtype != np.int32:
        raise UserError(
            f"{path} holds a {tokens.dtype} array of shape {tokens.shape}; expected int32 "
            f"token ids of shape [S, T] (np.save(path, ids.astype(np.int32))), or {REMAKE}"
        )
    if tokens.shape[0] == 0:
        raise UserError(
            f"{path} holds no sequences (S = 0): the corpus was too small for one chunk of "
            f"T = {tokens.shape[1]}; re-run `lingcollapse data prepare` with more text or a "
            "smaller --seq-len"
        )
    if tokens.shape[1] < 2:
        raise UserError(
            f"{path} has chunks of T = {tokens.shape[1]} tokens; T ≥ 2 is needed "
            "for a single (context, next token) sample"
        )
    _check_ids(path, tokens, vocab_size)
    return tokens


def _check_sha256(path: Path, split: str) -> None:
    """The split's bytes against the SHA-256 in ``meta.json`` (~1 s per GB, streamed)."""
    meta_path = path.parent / "meta.json"
    if not meta_path.is_file():
        return
    meta = read_json(meta_path, REMAKE)
    entry = meta.get("splits", {}).get(split, {}) if isinstance(meta, dict) else {}
    expected = entry.get("sha256") if isinstance(entry, dict) else None
    if expected is not None and file_sha256(path) != expected:
        raise UserError(
            f"{path} is corrupt: its bytes do not match the SHA-256 recorded in {meta_path} "
            f"(truncated, or a flipped bit); {REMAKE}"
        )


def _check_ids(path: Path, tokens: np.ndarray, vocab_size: int, rows: int = 4096) -> None:
    """Every id within [0, V): read in blocks so a 2 GB split never sits in memory."""
    for start in range(0, tokens.shape[0], rows):
        block = tokens[start : start + rows]
        low, high = int(block.min()), int(block.max())
        if low < 0 or high >= vocab_size:
            bad = high if high >= vocab_size else low
            raise UserError(
                f"{path} holds token id {bad}, outside the model's vocabulary "
                f"[0, {vocab_size}): the data was tokenized for another model"
            )
