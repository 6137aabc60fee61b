"""Packing token streams into the ``[S, T]`` chunks of a data dir.

Two recipes, which decide which tokens exist and so the class counts (paper §3.1):

- ``gpt`` (default): every document followed by EOS, all joined into one stream, cut
  into chunks of T; only the final partial chunk is dropped.
- ``group-texts``: Hugging Face ``run_clm``'s ``group_texts``, exactly. Documents are
  tokenized with the tokenizer's own special tokens and *no* EOS; ``datasets.map(...,
  batched=True, num_proc=P)`` first splits the documents into P contiguous shards
  (``Dataset.shard(P, i, contiguous=True)``: the first ``n % P`` shards get one extra
  document; P is capped at n), then each shard into batches of 1,000 documents. Each
  batch is concatenated and its tail that does not fill a chunk of T is dropped, so up
  to T − 1 tokens are lost per batch, and a batch shorter than T gives no chunk at all
  (run_clm of 2023–24, the paper's; the newest run_clm raises an error there instead).
  With TinyStories, GPT-Neo, T = 2048 and P = 2 this gives the paper's S = 229,367.

Chunks stream into a ``.npy`` file (:class:`ChunkWriter`) whose header is written last,
so no split is ever held in memory, and label counts (tokens 1..T−1 of each chunk, the
classes of the NC metrics) are counted on the way.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from lingcollapse import faults

GROUP_TEXTS_BATCH = 1000  # datasets.map's default batch_size, which run_clm keeps
_DTYPE = np.dtype("<i4")
_MAX_ROWS = 10**15  # placeholder S: numpy pads the header for growth, so any S fits


def _header(rows: int, seq_len: int) -> bytes:
    buf = io.BytesIO()
    meta = {"descr": _DTYPE.str, "fortran_order": False, "shape": (rows, seq_len)}
    np.lib.format.write_array_header_1_0(buf, meta)
    return buf.getvalue()


class ChunkWriter:
    """Append ``(k, T)`` int32 rows to a ``.npy`` file, then fix its shape on close.

    ``open_memmap`` would need S up front, which is only known after tokenizing; the
    file written here is the same format (``np.load(path, mmap_mode="r")`` reads it).
    """

    def __init__(self, path: str | Path, seq_len: int, vocab_size: int):
        self.path, self.seq_len, self.rows = Path(path), seq_len, 0
        self.label_counts = np.zeros(vocab_size, dtype=np.int64)  # (V,)
        self._file = open(self.path, "wb")
        self._header_len = len(_header(_MAX_ROWS, seq_len))
        self._file.write(_header(_MAX_ROWS, seq_len))

    def write(self, chunks: np.ndarray) -> None:
        """Append whole chunks ``(k, T)`` and count their labels (positions 1..T−1)."""
        if len(chunks) == 0:
            return
        chunks = np.ascontiguousarray(chunks, dtype=_DTYPE)  # (k, T)
        counts = np.bincount(chunks[:, 1:].ravel(), minlength=len(self.label_counts))
        if len(counts) > len(self.label_counts):  # an id ≥ V: keep it visible, don't crash
            counts[: len(self.label_counts)] += self.label_counts
            self.label_counts = counts
        else:
            self.label_counts += counts
        self._file.write(chunks.tobytes())
        self.rows += len(chunks)
        faults.point("data.chunks")

    def close(self) -> int:
        """Write the true header (same length as the placeholder) and return S."""
        header = _header(self.rows, self.seq_len)
        assert len(header) == self._header_len, "npy header length changed"
        self._file.seek(0)
        self._file.write(header)
        self._file.flush()
        os.fsync(self._file.fileno())  # on disk before the data dir is renamed into place
        self._file.close()
        return self.rows

    def __enter__(self) -> ChunkWriter:
        return self

    def __exit__(self, *exc) -> None:
        if not self._file.closed:
            self.close()


def pack_gpt(docs: Iterable[np.ndarray], eos: int, writer: ChunkWriter) -> int:
    """GPT packing: ``doc₁ EOS doc₂ EOS …`` cut into chunks of T. Returns tokens written
    to chunks (the final partial chunk, < T tokens, is dropped). Empty documents are
    skipped, so two EOS never meet."""
    T = writer.seq_len
    eos_arr = np.array([eos], dtype=_DTYPE)
    carry = np.empty(0, dtype=_DTYPE)
    pending: list[np.ndarray] = []
    pending_len = 0
    for doc in docs:
        if len(doc) == 0:
            continue
        pending += (doc, eos_arr)
        pending_len += len(doc) + 1
        if pending_len >= 64 * T:  # flush in blocks: one concatenate per ~64 chunks
            carry = _flush(np.concatenate([carry, *pending]), writer)
            pending, pending_len = [], 0
    _flush(np.concatenate([carry, *pending]), writer)
    return writer.rows * T


def _flush(stream: np.ndarray, writer: ChunkWriter) -> np.ndarray:
    """Write the whole chunks of ``stream``; return the remainder (< T tokens)."""
    T = writer.seq_len
    whole = len(stream) // T * T
    writer.write(stream[:whole].reshape(-1, T))  # (k, T)
    return stream[whole:]


def group_texts_batches(n_docs: int, num_proc: int | None, batch_size: int = GROUP_TEXTS_BATCH):
    """The ``(start, stop)`` document ranges that ``run_clm``'s ``group_texts`` sees, in
    order: ``num_proc`` contiguous shards as ``datasets.Dataset.shard``, each cut into
    batches of ``batch_size`` (the last batch of a shard may be shorter)."""
    shards = max(1, min(num_proc or 1, n_docs))  # datasets caps num_proc at len(dataset)
    div, mod = divmod(n_docs, shards)
    out = []
    for index in range(shards):
        start = div * index + min(index, mod)
        stop = start + div + (1 if index < mod else 0)
        out += [(b, min(b + batch_size, stop)) for b in range(start, stop, batch_size)]
    return out


def pack_group_texts(
    docs: Iterable[np.ndarray],
    n_docs: int,
    writer: ChunkWriter,
    num_proc: int | None = None,
    batch_size: int = GROUP_TEXTS_BATCH,
) -> int:
    """run_clm's ``group_texts`` (see the module docstring): per batch of documents,
    concatenate and keep the whole chunks of T. Returns the number of documents read."""
    T = writer.seq_len
    docs = iter(docs)
    read = 0
    for start, stop in group_texts_batches(n_docs, num_proc, batch_size):
        batch = [next(docs) for _ in range(stop - start)]
        read += len(batch)
        stream = np.concatenate(batch) if batch else np.empty(0, dtype=_DTYPE)
        whole = len(stream) // T * T  # the remainder of *this batch* is dropped
        writer.write(stream[:whole].reshape(-1, T))  # (k, T)
    return read
