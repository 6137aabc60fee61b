"""``data prepare``: corpus → tokenizer → packed ``{split}.npy`` + ``meta.json``.

The output is built in a hidden temporary dir beside ``out`` and renamed into place at
the end, so an interrupted run leaves no half data dir, and an existing data dir is only
replaced when asked (``overwrite``). ``meta.json`` records the SHA-256 of each split and
of itself, so a truncated or damaged copy is detected when the data is read.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from lingcollapse import __version__, faults
from lingcollapse.data import packing, tokenizer
from lingcollapse.data.corpus import Corpus, split_documents
from lingcollapse.errors import UserError
from lingcollapse.io import exclusive, file_sha256, write_json
from lingcollapse.progress import progress

FORMAT = "lingcollapse.data/1"
SPLITS = ("train", "validation")
PACKINGS = ("gpt", "group-texts")
_ENCODE_BATCH = 1000  # documents per Rust batch call: enough work for every thread
log = logging.getLogger(__name__)


@dataclass
class PrepareConfig:
    """What ``data prepare`` makes; ``None`` fields take the corpus's default."""

    out: Path
    corpus: str = "embedded"  # embedded | tinystories | a local path
    tokenizer: str | None = None  # hub id or path; None: train a byte-level BPE
    vocab_size: int | None = None  # of the trained BPE (default 4096)
    seq_len: int | None = None  # T (default 256 embedded, 2048 otherwise)
    packing: str = "gpt"
    num_proc: int | None = None  # group-texts shards (None: 1, as run_clm) and threads
    tokens: int | None = None  # size of the embedded corpus, about (default 3,000,000)
    seed: int = 0
    validation_fraction: float | None = None  # embedded/local (default 0.05)
    text_column: str = "text"
    dataset_dir: Path | None = None  # local copy of TinyStories
    overwrite: bool = False

    def __post_init__(self):
        self.out = Path(self.out)
        kind = self.kind
        if self.seq_len is None:
            self.seq_len = 256 if kind == "embedded" else 2048
        if self.tokenizer is None and kind == "tinystories":
            self.tokenizer = "EleutherAI/gpt-neo-125M"  # the paper's (Appendix A)
        if self.tokenizer is None and self.vocab_size is None:
            self.vocab_size = 4096
        if self.tokens is None and kind == "embedded":
            self.tokens = 3_000_000  # "a few million", generated in about a second
        if self.validation_fraction is None and kind != "tinystories":
            self.validation_fraction = 0.05
        self._validate()

    @property
    def kind(self) -> str:
        return self.corpus if self.corpus in ("embedded", "tinystories") else "local"

    def _validate(self) -> None:
        if self.seq_len < 2:
            raise UserError(
                f"--seq-len {self.seq_len}: T ≥ 2 is needed for one (context, next token) pair"
            )
        if self.packing not in PACKINGS:
            raise UserError(f"--packing {self.packing!r}: choose one of {', '.join(PACKINGS)}")
        if self.tokenizer is not None and self.vocab_size is not None:
            raise UserError("--vocab-size is for a trained BPE; leave it out with --tokenizer")
        if self.vocab_size is not None and self.vocab_size < tokenizer.MIN_VOCAB:
            raise UserError(
                f"--vocab-size {self.vocab_size} is too small: a byte-level BPE needs at least "
                f"{tokenizer.MIN_VOCAB} (256 bytes + EOS); try 4096"
            )
        if self.num_proc is not None and self.num_proc < 1:
            raise UserError(f"--num-proc {self.num_proc}: need at least 1")
        if self.tokens is not None and self.kind != "embedded":
            raise UserError("--tokens sizes the embedded corpus; drop it for other corpora")
        if self.tokens is not None and self.tokens < 1:
            raise UserError(f"--tokens {self.tokens}: need a positive size")
        if self.kind == "tinystories" and self.validation_fraction is not None:
            raise UserError("TinyStories has its own validation split: drop --validation-fraction")
        if self.validation_fraction is not None and not 0 <= self.validation_fraction < 1:
            raise UserError(f"--validation-fraction {self.validation_fraction}: need 0 ≤ F < 1")
        if self.dataset_dir is not None and self.kind != "tinystories":
            raise UserError("--dataset-dir is for --corpus tinystories")


@dataclass
class Prepared:
    """The result: the data dir, its ``meta.json`` and seconds per stage."""

    path: Path
    meta: dict
    timings: dict = field(default_factory=dict)


def prepare(cfg: PrepareConfig) -> Prepared:
    """Make the data dir of ``cfg`` (see the module docstring)."""
    _refuse_existing(cfg.out, cfg.overwrite)
    if cfg.num_proc:  # tokenizers' thread pool reads this once, at its first use
        os.environ.setdefault("RAYON_NUM_THREADS", str(cfg.num_proc))
    timings: dict[str, float] = {}
    with exclusive(cfg.out, "data dir"), _staging(cfg.out, cfg.overwrite) as tmp:
        _refuse_existing(cfg.out, cfg.overwrite)  # again: another run may just have finished
        start = time.perf_counter()
        corpus = _load_corpus(cfg)
        timings["load" if cfg.kind != "embedded" else "generate"] = time.perf_counter() - start
        start = time.perf_counter()
        tok, tok_meta = _tokenizer(cfg, corpus)
        tok.save_pretrained(tmp / "tokenizer")
        timings["tokenizer"] = time.perf_counter() - start
        splits = {}
        for split in SPLITS:
            splits[split] = _pack_split(cfg, corpus.splits[split], tok, tmp / f"{split}.npy", split)
            timings["tokenize"] = timings.get("tokenize", 0) + splits[split].pop("tokenize_s")
            timings["pack"] = timings.get("pack", 0) + splits[split].pop("pack_s")
        if splits["train"]["S"] == 0:
            raise UserError(
                f"the corpus is too small for one chunk of T = {cfg.seq_len} tokens "
                f"({splits['train']['tokens']} train tokens); lower --seq-len or add text"
            )
        if splits["validation"]["S"] == 0:
            log.warning("warning: the validation split holds no chunk of T = %d", cfg.seq_len)
        meta = _meta(cfg, corpus, tok, tok_meta, splits)
        write_json(tmp / "meta.json", meta, checksum=True)
    return Prepared(cfg.out, meta, timings)


def prepare_embedded(
    out: str | Path,
    tokens: int = 50_000,
    seq_len: int = 64,
    vocab_size: int = 512,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """A small data dir of the embedded corpus, for tests of later stages (~1 s for 50k
    tokens). Returns its path."""
    cfg = PrepareConfig(
        out=Path(out),
        tokens=tokens,
        seq_len=seq_len,
        vocab_size=vocab_size,
        seed=seed,
        overwrite=overwrite,
    )
    return prepare(cfg).path


def _refuse_existing(out: Path, overwrite: bool) -> None:
    if not out.exists():
        return
    if not overwrite:
        raise UserError(
            f"{out} already exists; pass --overwrite to replace it, or pick another --out"
        )
    if not out.is_dir() or (any(out.iterdir()) and not (out / "meta.json").is_file()):
        raise UserError(
            f"{out} exists and is not a data dir (no meta.json): refusing to replace it even "
            "with --overwrite; remove it yourself or pick another --out"
        )


@contextlib.contextmanager
def _staging(out: Path, overwrite: bool) -> Iterator[Path]:
    """A temporary dir beside ``out``, renamed to ``out`` on success, removed on failure."""
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; give the usual mode
        faults.point(f"write-dir:{out}")
        if out.exists() and overwrite:
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old / "data")  # both renames stay on one file system
            os.replace(tmp, out)
            shutil.rmtree(old)
        else:
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _remove_stale(out: Path) -> None:
    """Staging dirs of runs that were killed (``kill -9`` skips every clean-up): under
    the lock on ``out`` no other run can be using them, and each may be gigabytes."""
    for stale in out.parent.glob(f".{glob.escape(out.name)}.????????.*"):  # mkdtemp's
        if stale.is_dir() and stale.suffix in (".tmp", ".old"):  # not data.v2's, say
            log.info("removing %s, left by an interrupted run", stale)
            shutil.rmtree(stale, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _load_corpus(cfg: PrepareConfig) -> Corpus:
    if cfg.kind == "embedded":
        from lingcollapse.data import stories

        train_seed, val_seed = np.random.SeedSequence(cfg.seed).spawn(2)  # independent streams
        n_val = round(cfg.tokens * cfg.validation_fraction)
        splits = {
            "train": stories.generate(cfg.tokens - n_val, train_seed),
            "validation": stories.generate(n_val, val_seed) if n_val else [],
        }
        source = {"corpus": "embedded", "generator": stories.VERSION, "tokens": cfg.tokens}
        corpus = Corpus("embedded", splits, source)
    elif cfg.kind == "tinystories":
        from lingcollapse.data.tinystories import load_tinystories

        corpus = load_tinystories(cfg.dataset_dir)
    else:
        from lingcollapse.data.local import read_documents

        docs = read_documents(cfg.corpus, cfg.text_column)
        train, val = split_documents(docs, cfg.validation_fraction, cfg.seed)
        source = {
            "corpus": "local",
            "path": str(Path(cfg.corpus).resolve()),
            "text_column": cfg.text_column,
            "documents": len(docs),
        }
        corpus = Corpus(str(cfg.corpus), {"train": train, "validation": val}, source)
    corpus.check()
    return corpus


def _tokenizer(cfg: PrepareConfig, corpus: Corpus):
    """The loaded or trained tokenizer and what meta.json records of it."""
    if cfg.tokenizer is not None:
        tok = tokenizer.load_tokenizer(cfg.tokenizer)
        return tok, {"name": cfg.tokenizer, "trained": False}
    train = corpus.splits["train"]
    batches = (train[i : i + _ENCODE_BATCH] for i in range(0, len(train), _ENCODE_BATCH))
    tok = tokenizer.train_bpe(batches, cfg.vocab_size, length=len(train))
    return tok, {"name": "byte-level-bpe", "trained": True, "requested_vocab_size": cfg.vocab_size}


def _pack_split(cfg: PrepareConfig, docs, tok, path: Path, split: str) -> dict:
    """Tokenize ``docs`` and pack them into ``path``; the split's entry of meta.json."""
    clock = {"tokenize_s": 0.0, "tokens": 0}
    stream = _encoded(docs, tok, special=cfg.packing == "group-texts", clock=clock, split=split)
    start = time.perf_counter()
    with packing.ChunkWriter(path, cfg.seq_len, tokenizer.vocab_size(tok)) as writer:
        if cfg.packing == "gpt":
            packing.pack_gpt(stream, tok.eos_token_id, writer)
        else:
            packing.pack_group_texts(stream, len(docs), writer, cfg.num_proc)
        S = writer.close()
        labels = writer.label_counts
    total = time.perf_counter() - start
    return {
        "documents": len(docs),
        "tokens": clock["tokens"],  # tokenized, EOS included, before chunking drops any
        "S": S,
        "N": S * (cfg.seq_len - 1),
        "C": int(np.count_nonzero(labels)),
        "sha256": file_sha256(path),  # checked by every reader (collect.data.open_split)
        "tokenize_s": clock["tokenize_s"],
        "pack_s": total - clock["tokenize_s"],
    }


def _encoded(docs, tok, *, special: bool, clock: dict, split: str) -> Iterator[np.ndarray]:
    """Token ids per document, encoded in batches (timed apart from packing)."""
    eos = 0 if special else 1  # gpt packing adds one EOS per non-empty document
    with progress(total=len(docs), desc=f"tokenizing {split}", unit="doc", unit_scale=True) as bar:
        for i in range(0, len(docs), _ENCODE_BATCH):
            start = time.perf_counter()
            batch = list(tokenizer.encode(tok, docs[i : i + _ENCODE_BATCH], special=special))
            clock["tokenize_s"] += time.perf_counter() - start
            clock["tokens"] += sum(len(ids) + (eos if len(ids) else 0) for ids in batch)
            bar.update(len(batch))
            yield from batch


def _meta(cfg: PrepareConfig, corpus: Corpus, tok, tok_meta: dict, splits: dict) -> dict:
    """meta.json: source, tokenizer, T, S, N = S(T − 1), V and C of the train split.

    ``vocab_size`` (V) bounds every id, so training can check that a model's embedding
    fits; ``C`` counts distinct labels (tokens 1..T−1 of train chunks), the paper's C.
    """
    train = splits["train"]
    settings = {k: v for k, v in asdict(cfg).items() if k not in ("out", "overwrite")}
    return {
        "format": FORMAT,
        "source": corpus.source,
        "tokenizer": tok_meta,
        "vocab_size": tokenizer.vocab_size(tok),
        "eos_token_id": tok.eos_token_id,
        "seq_len": cfg.seq_len,
        "T": cfg.seq_len,  # the paper's name for seq_len; both are read
        "S": train["S"],
        "N": train["N"],
        "C": train["C"],
        "packing": cfg.packing,
        "num_proc": cfg.num_proc if cfg.packing == "group-texts" else None,
        "seed": cfg.seed,
        "splits": splits,
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in settings.items()},
        "lingcollapse_version": __version__,
    }
