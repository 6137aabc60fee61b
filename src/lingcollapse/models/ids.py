"""Names of training runs and of measured models, in the paper authors' convention.

The authors' table (``lc-2024_05_18.csv``) names every measured model
``LLxDDDD_EE{w}[SS]@k``: depth ``LL``, width ``DDDD``, a schedule of ``EE`` epochs,
weight decay ``w`` (``d`` = 0.0005, ``L`` = 0.1; their scripts use ``n`` for none), two
seed digits ``SS`` for runs not trained with the default seed, and ``k`` the epoch after
which it was measured, counted from 0 (``10x0512_10L@5`` is epoch 6 of a 10-epoch run).
Their run dirs are ``TinyStories-LLxDDDD_EE{w}[SS]``.

We use the same form so that our tables and theirs join on ``model``:

- the seed digits appear when the seed is not :data:`DEFAULT_SEED`, the Trainer's
  default (``TrainingArguments.seed = 42``), which the authors' base runs used; their 20
  extra seeds ``00`` … ``19`` are seeds 0 … 19;
- a weight decay other than theirs is written ``w`` and its decimal value, and then a
  seed is ``s`` and its digits (``01w0.01@0``, ``01w0.01s07@0``);
- a family other than GPT-Neo is appended with a dash (``02x0768_01d-llama@0``);
- the run prefix names the corpus (``TinyStories``, ``Stories`` for the built-in one, or
  a local corpus's file name), so a run on other data does not pass for the paper's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_SEED = 42  # transformers.TrainingArguments.seed
DECAY_LETTERS = {0.0005: "d", 0.1: "L", 0.0: "n"}
_LETTER_DECAY = {v: k for k, v in DECAY_LETTERS.items()}
_ID = re.compile(
    r"^(?P<depth>\d+)x(?P<width>\d+)_(?P<epochs>\d+)"
    r"(?:(?P<letter>[A-Za-z])(?P<seed>\d+)?|w(?P<decay>[0-9.]+)(?:s(?P<wseed>\d+))?)"
    r"(?:-(?P<family>[a-z0-9-]+))?@(?P<k>\d+)$"
)


@dataclass(frozen=True)
class ModelId:
    """The identity an authors'-style model id encodes."""

    depth: int
    width: int
    schedule_epochs: int  # the run's training length
    weight_decay: float
    seed: int
    checkpoint: int  # k: measured after epoch k + 1
    family: str = "gpt-neo"

    @property
    def epochs(self) -> int:
        """Epochs trained when measured."""
        return self.checkpoint + 1

    @property
    def run(self) -> str:
        """The id without ``@k``: every model measured from one run shares it."""
        return stem(
            self.depth, self.width, self.schedule_epochs, self.weight_decay, self.seed, self.family
        )


def _decay_code(weight_decay: float, seed: int) -> str:
    """``d``/``L``/``n`` and the seed digits, or ``w<decimal>`` and ``s<seed>``."""
    letter = DECAY_LETTERS.get(float(weight_decay))
    if letter:
        return letter + ("" if seed == DEFAULT_SEED else f"{seed:02d}")
    decimal = np.format_float_positional(float(weight_decay), trim="-")  # no exponent, no '-'
    return f"w{decimal}" + ("" if seed == DEFAULT_SEED else f"s{seed:02d}")


def stem(
    depth: int, width: int, epochs: int, weight_decay: float, seed: int, family: str = "gpt-neo"
) -> str:
    """``LLxDDDD_EE{w}[SS][-family]``: a run's name without its corpus."""
    suffix = "" if family == "gpt-neo" else f"-{family}"
    return f"{depth:02d}x{width:04d}_{epochs:02d}{_decay_code(weight_decay, seed)}{suffix}"


def model_id(
    depth: int,
    width: int,
    epochs: int,
    weight_decay: float,
    seed: int,
    epoch: int,
    family: str = "gpt-neo",
) -> str:
    """The id of the model a run of ``epochs`` epochs is after epoch ``epoch`` (from 1)."""
    return f"{stem(depth, width, epochs, weight_decay, seed, family)}@{epoch - 1}"


def run_name(
    depth: int,
    width: int,
    epochs: int,
    weight_decay: float,
    seed: int = DEFAULT_SEED,
    family: str = "gpt-neo",
    corpus: str = "TinyStories",
) -> str:
    """A run dir's name, e.g. ``TinyStories-02x0768_01d`` or ``Stories-01x0032_02d07``."""
    return f"{corpus}-{stem(depth, width, epochs, weight_decay, seed, family)}"


def parse_model_id(name: str) -> ModelId | None:
    """The identity in an id of the form above; None when ``name`` is not one."""
    m = _ID.match(str(name))
    if m is None:
        return None
    if m["letter"] is not None:
        if m["letter"] not in _LETTER_DECAY:
            return None
        decay = _LETTER_DECAY[m["letter"]]
    else:
        try:
            decay = float(m["decay"])
        except ValueError:
            return None
    return ModelId(
        depth=int(m["depth"]),
        width=int(m["width"]),
        schedule_epochs=int(m["epochs"]),
        weight_decay=decay,
        seed=int(digits) if (digits := m["seed"] or m["wseed"]) else DEFAULT_SEED,
        checkpoint=int(m["k"]),
        family=m["family"] or "gpt-neo",
    )


def corpus_label(source: dict | str | None) -> str:
    """The run-name prefix for a corpus: a data dir's ``meta.json`` ``source`` or a
    ``data prepare --corpus`` value."""
    if isinstance(source, dict):
        corpus = source.get("corpus")
        source = source.get("path") if corpus == "local" else corpus
    if source in (None, ""):
        return "Data"
    if source == "tinystories":
        return "TinyStories"
    if source == "embedded":
        return "Stories"  # the built-in generator: TinyStories-like, not TinyStories
    label = re.sub(r"[^A-Za-z0-9]+", "", Path(str(source)).stem.title())
    return label or "Data"
