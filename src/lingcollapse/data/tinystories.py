"""TinyStories (``roneneldan/TinyStories``), the version the paper used (Appendix A).

That version has 2,119,719 train and 21,990 validation stories in a ``text`` column; the
paper tokenized it with GPT-Neo (``EleutherAI/gpt-neo-125M``). With network it is fetched
by ``datasets``; offline it is read from the ``datasets`` cache or from a local copy of
the dataset repository (``--dataset-dir``), and otherwise fails with what to download.
"""

from __future__ import annotations

import logging
from pathlib import Path

from lingcollapse.data.corpus import Corpus
from lingcollapse.errors import UserError, first_line

REPO = "roneneldan/TinyStories"
TOKENIZER = "EleutherAI/gpt-neo-125M"
PAPER_SIZES = {"train": 2_119_719, "validation": 21_990}
log = logging.getLogger(__name__)


def load_tinystories(dataset_dir: str | Path | None = None) -> Corpus:
    """Both splits as ``datasets`` text columns (memory-mapped Arrow, not Python lists)."""
    splits = _load(dataset_dir)
    for name, expected in PAPER_SIZES.items():
        if name not in splits:
            raise UserError(f"TinyStories copy has no {name!r} split (splits: {list(splits)})")
        if len(splits[name]) != expected:
            log.warning(
                "TinyStories %s has %d stories, not the paper's %d: another version",
                name,
                len(splits[name]),
                expected,
            )
    source = {"corpus": "tinystories", "dataset": REPO, "dataset_dir": str(dataset_dir or "")}
    return Corpus("tinystories", {k: TextColumn(splits[k]) for k in PAPER_SIZES}, source)


class TextColumn:
    """The ``text`` column of a ``datasets.Dataset``, sliced lazily (never a Python list
    of two million stories)."""

    def __init__(self, dataset, column: str = "text"):
        if column not in dataset.column_names:
            raise UserError(f"TinyStories copy has no {column!r} column ({dataset.column_names})")
        self.dataset, self.column = dataset, column

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: slice) -> list[str]:
        return self.dataset[index][self.column]


def _load(dataset_dir):
    import datasets

    from lingcollapse.hub import download_hint, hub_reachable

    datasets.disable_progress_bars()
    if dataset_dir is not None:
        if not Path(dataset_dir).is_dir():
            raise UserError(f"--dataset-dir {dataset_dir} is not a directory")
        try:
            return datasets.load_dataset(str(dataset_dir))
        except Exception as err:  # datasets raises many types for a bad copy
            raise UserError(
                f"cannot read TinyStories from {dataset_dir}: {first_line(err)}"
            ) from None
    if not hub_reachable():
        datasets.config.HF_HUB_OFFLINE = True  # the cache only: no half-minute retries
    try:
        return datasets.load_dataset(REPO)
    except Exception as err:
        raise UserError(
            f"cannot load {REPO} ({first_line(err)}). Offline, download it on a machine with "
            f"network: `{download_hint(REPO, repo_type='dataset')}` "
            "(or load it once with `datasets` and copy ~/.cache/huggingface/datasets), then "
            "pass `--corpus tinystories --dataset-dir DIR` (or set HF_DATASETS_OFFLINE=1 with "
            "the cache in place)"
        ) from None
