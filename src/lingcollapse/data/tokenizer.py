"""Tokenizers for a data dir: any Hugging Face tokenizer, or a byte-level BPE trained here.

Either way the result is a ``PreTrainedTokenizerFast`` with an EOS token, saved as HF
files in ``DATA_DIR/tokenizer`` so ``AutoTokenizer.from_pretrained`` loads it offline.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator

import numpy as np

from lingcollapse.errors import UserError

EOS = "<|endoftext|>"  # GPT-2/GPT-Neo's document separator, so ids read the same way
MIN_VOCAB = 257  # 256 byte symbols + EOS: below this a byte-level BPE cannot exist


def train_bpe(texts: Iterable[str], vocab_size: int, *, length: int | None = None):
    """A byte-level BPE (GPT-2 style) with ``vocab_size`` tokens, EOS = id 0, trained on
    ``texts``. May end smaller than asked when the corpus has fewer merges to offer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < MIN_VOCAB:
        raise UserError(
            f"--vocab-size {vocab_size} is too small: a byte-level BPE needs at least "
            f"{MIN_VOCAB} (256 bytes + EOS); try 4096"
        )
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=sys.stderr.isatty(),  # its own bar, like ours: terminal only
    )
    tok.train_from_iterator(texts, trainer=trainer, length=length)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, bos_token=EOS, unk_token=EOS, model_max_length=10**9
    )


def load_tokenizer(source: str):
    """A fast HF tokenizer from a hub id or a local dir; it must have an EOS token."""
    from transformers import AutoTokenizer

    from lingcollapse.hub import load_pretrained

    tok = load_pretrained(AutoTokenizer.from_pretrained, source, "tokenizer", use_fast=True)
    if not getattr(tok, "is_fast", False):
        raise UserError(f"tokenizer {source!r} has no fast (Rust) version; pass one that does")
    if tok.eos_token_id is None:
        raise UserError(
            f"tokenizer {source!r} has no EOS token, which packing puts between documents; "
            "use a tokenizer with one"
        )
    return tok


def vocab_size(tok) -> int:
    """Ids run over [0, len(tok)): the base vocabulary plus any added tokens."""
    return len(tok)


def encode(tok, texts: list[str], *, special: bool = False) -> Iterator[np.ndarray]:
    """Each text's token ids as int32. ``special`` adds the tokenizer's own special tokens
    (a BOS for Llama, nothing for GPT-2/Neo), as ``tokenizer(texts)`` in run_clm does.
    The Rust batch encoder runs on the threads ``RAYON_NUM_THREADS`` allows."""
    backend = tok.backend_tokenizer
    encoder = getattr(backend, "encode_batch_fast", backend.encode_batch)  # no offsets: faster
    for enc in encoder(texts, add_special_tokens=special):
        yield np.asarray(enc.ids, dtype=np.int32)  # (n_i,)
