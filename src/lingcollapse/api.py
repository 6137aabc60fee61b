"""The Python API: statistics in, every neural-collapse metric out, in a notebook.

>>> import lingcollapse as lc
>>> train = lc.collect_embeddings(model, batches)              # a model in memory
>>> m = lc.measure(train, classifier=model)                    # or lc.measure("RUN")
>>> m.to_dict()["nc1_cdnv"], m.classes.head()

The command line calls the very functions these call (:mod:`lingcollapse.metrics.job`,
:mod:`lingcollapse.collect.accumulate`), so a result here equals the command's.
"""

from __future__ import annotations

import os

from lingcollapse.collect.in_memory import Collected, collect_embeddings
from lingcollapse.errors import UserError
from lingcollapse.metrics import job
from lingcollapse.metrics.result import Measurement
from lingcollapse.stats import files
from lingcollapse.stats.classes import ClassStats
from lingcollapse.stats.validation import ValidationStats

__all__ = ["Collected", "Measurement", "collect_embeddings", "load_stats", "measure"]


def load_stats(path: str | os.PathLike, kind: str | None = None) -> ClassStats | ValidationStats:
    """Read a statistics file made by ``lingcollapse collect`` (or ``stats merge``).

    Args:
        path: a ``.safetensors`` stats file, or a run dir, which stands for its
            ``stats/train.safetensors`` (``stats/validation.safetensors`` with
            ``kind="validation"``).
        kind: ``"train"`` or ``"validation"`` to insist on one; None takes the file's.

    Returns:
        :class:`ClassStats` (train: per class c the count ``N_c``, the mean
        ``μ_c = (1/N_c) Σ h`` (Eq. 2) and ``M2_c = Σ ‖h − μ_c‖²`` (Eq. 3 times N_c), in
        float64, and the metadata saying what made them) or :class:`ValidationStats`
        (per true class: samples, loss sum, top-1 hits, NCC hits and NC4 agreements).

    Raises:
        UserError: a missing, truncated or corrupt file (checked against its SHA-256),
            another kind of file, or a run dir without stats.
    """
    if kind not in (None, "train", "validation"):
        raise UserError(f"kind must be 'train', 'validation' or None, not {kind!r}")
    return files.load_stats(path, kind=kind)


def measure(
    train,
    validation=None,
    classifier=None,
    *,
    ood=None,
    tokenizer=None,
    preset: str | None = None,
    min_count: int | None = None,
    cdnv_power: float | None = None,
    device: str = "auto",
    tile: int | None = None,
    cdnv_control: bool = False,
    sample_pairs: int | None = None,
    sample_seed: int | None = None,
) -> Measurement:
    """Every neural-collapse metric of one model's statistics, as ``lingcollapse measure``.

    NC1 (Eq. 4: CDNV ``(σ_c² + σ_c'²) / (2 ‖μ_c − μ_c'‖^(2+k))`` over pairs of classes),
    (G)NC2 (Eq. 5–7: spread of ``log ‖μ_c − μ̄‖``, interference ``⟨ẑ_c, ẑ_c'⟩``, the log
    kernel ``log ‖ẑ_c − ẑ_c'‖⁻¹``), (U)NC3 (Eq. 8, 11: ``⟨w_c/‖w_c‖, ẑ_c⟩``), NC4 (Eq.
    9–10: agreement of ``argmax ⟨w_c, h⟩ + b_c`` with ``argmin ‖h − μ_c‖``), validation
    loss, and the per-class table; :class:`Measurement` defines each of them.

    Args:
        train: train statistics: a stats file, a run dir (its
            ``stats/train.safetensors``) or the :class:`ClassStats` of
            :func:`collect_embeddings` / :func:`load_stats`.
        validation: validation statistics (file or :class:`ValidationStats`) made against
            these train means, for NC4 and the validation loss. None: for train stats
            read from a file, the same layer's ``validation*.safetensors`` beside them.
        classifier: the output layer ``W h + b`` (Eq. 1) for NC3: a model in memory
            (``nn.Module``, PEFT ones included), a weight tensor (V, d), a ``(weight,
            bias)`` pair, a model or run dir, a hub id or a safetensors file with
            ``weight`` and ``bias``. None: the run's own model, when ``train`` is a run's.
        ood: train statistics of an out-of-distribution corpus, for NC5.
        tokenizer: decodes the ``token`` column of :attr:`Measurement.classes`: a
            tokenizer, a dir or a hub id. None: found offline from the run or from the
            statistics' provenance (the model's dir, a cached hub id, the data dir's
            ``tokenizer/``); without one the column holds the ids.
        preset: the conventions: ``wu-papyan`` (default, the paper's), ``papyan``,
            ``zhu``, ``galanti``.
        min_count: keep the classes with at least this many train samples (default 1).
        cdnv_power: k of Eq. 4 (the preset's: 2 for the paper; 0 is Galanti's CDNV).
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
        tile: classes per tile of the pairwise pass (default 1024, or less to fit).
        cdnv_control: also ``nc1_cdnv_k0``, the scale-invariant CDNV (k = 0).
        sample_pairs: estimate the pairwise metrics from this many uniformly drawn pairs
            of classes instead of all C(C − 1)/2 (O(N·d) instead of O(C²·d)): each
            estimate ``NAME`` gets ``NAME_ci95`` = [low, high], its 95% interval, and
            ``to_dict()["sampling"]`` says what was estimated, exact or skipped
            (:mod:`lingcollapse.metrics.sampled`). None: exact.
        sample_seed: the seed of those pairs (default 0): a seed gives the same pairs.

    Returns:
        A :class:`Measurement`: ``.to_dict()`` (the content of ``metrics.json``),
        ``.classes`` (a pandas DataFrame), ``.settings``, ``.provenance``, ``.save(dir)``.

    Raises:
        UserError: unreadable or mismatched inputs (validation stats of other means,
            a classifier of another width, …) and bad settings, each with what to do.
    """
    conv = job.check_settings(
        preset, min_count, cdnv_power, tile, device, sample_pairs, sample_seed
    )
    inputs = job.read_inputs(train, validation, classifier, ood, tokenizer)
    return job.measure_inputs(
        inputs,
        conv,
        preset=preset,
        device=device,
        tile=tile,
        cdnv_control=cdnv_control,
        sample_pairs=sample_pairs,
        sample_seed=sample_seed,
    )
