"""One ``measure`` job: statistics → a :class:`~lingcollapse.metrics.result.Measurement`,
written as ``classes.parquet`` + ``metrics.json``.

:class:`MeasureConfig` holds the options of ``lingcollapse measure`` and checks them when
it is made, reading no input file, so a sweep can validate every stage before any work.
Then two steps, which the command (:func:`measure_files`) and the Python API
(:func:`lingcollapse.measure`) share so that they cannot drift apart:

- :func:`read_inputs`: the statistics, classifier and tokenizer, each given as a path or
  as an object in memory; what is not given is found beside the train stats (the run's
  validation stats and model) or from their provenance (the tokenizer, offline);
- :func:`measure_inputs`: every metric and the per-class table, with the model's
  identity and the conventions, as one :class:`Measurement`.

It logs nothing: the notes and warnings come back for the caller to say or keep quiet.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lingcollapse.device import check_device_name, pick_device
from lingcollapse.errors import UserError
from lingcollapse.memory import is_out_of_memory
from lingcollapse.metrics import conventions, sampled
from lingcollapse.metrics.classifier import load_classifier
from lingcollapse.metrics.compute import Measured, measure
from lingcollapse.metrics.result import Measurement
from lingcollapse.models.ids import corpus_label
from lingcollapse.models.saved import model_dir_of, read_identity
from lingcollapse.stats.classes import ClassStats
from lingcollapse.stats.files import load_stats, stats_path
from lingcollapse.stats.validation import ValidationStats

IDENTITY = ("model", "width", "depth", "n_params", "epochs", "weight_decay", "seed")
# Beside the identity of results.csv, what a trained model dir records (models.saved): the run it
# comes from, its schedule and the epoch it was measured after (Figure 5), its family.
RUN_IDENTITY = (*IDENTITY, "run", "schedule_epochs", "checkpoint", "family", "corpus")
# The model's own loss and accuracy: an inner layer's validation stats apply the output
# layer to states it was never fed, so they are left out there (NC4 and NCC stay).
MODEL_ONLY = ("val_loss", "val_ppl", "val_acc")
DEFAULT_PRESET = "wu-papyan"


@dataclass
class MeasureConfig:
    """The options of ``lingcollapse measure``; ``None`` takes the default in the comment.

    Made from a command line or by a sweep; either way the values are checked here, with
    the flags' names in the messages.
    """

    train_stats: Path  # train stats (.safetensors) from collect
    validation: Path | None = None  # validation.safetensors beside train_stats, if present
    classifier: str | None = None  # the run's model/, if present (NC3)
    ood: Path | None = None  # no NC5
    preset: str | None = None  # wu-papyan, the paper's conventions
    min_count: int | None = None  # the preset's (1)
    cdnv_power: float | None = None  # the preset's k of Eq. 4
    tokenizer: str | None = None  # the run's, else token ids only
    device: str = "auto"
    tile: int | None = None  # 1024, or less to fit free memory
    cdnv_control: bool = False  # also nc1_cdnv_k0, the scale-invariant CDNV (k = 0)
    sample_pairs: int | None = None  # exact; N: pairwise metrics estimated from N pairs
    sample_seed: int | None = None  # 0: the seed of the pairs drawn
    out: Path | None = None  # the run dir (the parent of stats/), else the stats' dir

    def __post_init__(self) -> None:
        self.train_stats = stats_path(self.train_stats)  # a run dir: its stats/train…
        self.validation = _optional_path(self.validation)
        self.ood = _optional_path(self.ood)
        self.out = _optional_path(self.out)
        check_settings(
            self.preset,
            self.min_count,
            self.cdnv_power,
            self.tile,
            self.device,
            sample_pairs=self.sample_pairs,
            sample_seed=self.sample_seed,
        )
        if self.out is not None:
            _check_out(self.out)

    def convention(self) -> conventions.Convention:
        """The preset with ``--min-count`` and ``--cdnv-power`` laid over it."""
        return conventions.resolve(
            self.preset, min_count=self.min_count, cdnv_power=self.cdnv_power
        )


def check_settings(
    preset, min_count, cdnv_power, tile, device, sample_pairs=None, sample_seed=None
) -> conventions.Convention:
    """The convention of ``preset`` with ``min_count`` and ``cdnv_power`` laid over it,
    after checking them, ``tile``, the device's name and the sampling of pairs (a
    :class:`UserError` each)."""
    conv = conventions.resolve(preset, min_count=min_count, cdnv_power=cdnv_power)
    if tile is not None and tile < 1:
        raise UserError(f"--tile must be positive, not {tile}")
    sampled.check_count(sample_pairs, sample_seed)
    if sample_pairs is not None and tile is not None:
        raise UserError(
            "--tile sets the tiles of the exact pairwise pass, which --sample-pairs "
            "replaces: drop one of them"
        )
    check_device_name(device)
    return conv


@dataclass
class Inputs:
    """What one measure reads, in memory, and where it came from."""

    train: ClassStats
    validation: ValidationStats | None = None
    classifier: tuple | None = None  # (W (V, d), b (V,) or None) of Eq. 1
    ood: ClassStats | None = None
    tokenizer: object | None = None  # anything with decode([id]) -> str
    run_dir: Path | None = None  # the run the train stats belong to, if read from a file
    tag: str = ""  # "" for the last layer's stats, ".layerNN" for block NN's
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class MeasureOutcome:
    """What :func:`measure_files` wrote, and what to tell the user about it."""

    metrics: dict  # the content of metrics.json, less its checksum
    out: Path  # the dir holding metrics.json and classes.parquet
    notes: list[str] = field(default_factory=list)  # defaults it chose ("using …")
    warnings: list[str] = field(default_factory=list)  # worth a "warning:" line each


def measure_files(cfg: MeasureConfig) -> MeasureOutcome:
    """Every metric (Eq. 2–11) from ``cfg``'s files, written to its out dir.

    ``classes.parquet`` is written first and ``metrics.json`` last, with its checksum: a
    metrics.json newer than the stats marks a finished measure, even after a kill.
    """
    run_dir = _run_dir(cfg.train_stats)
    out = cfg.out or run_dir
    _check_out(out)  # again: the default, or a file made since the config was
    inputs = read_inputs(cfg.train_stats, cfg.validation, cfg.classifier, cfg.ood, cfg.tokenizer)
    result = measure_inputs(
        inputs,
        cfg.convention(),
        preset=cfg.preset,
        device=cfg.device,
        tile=cfg.tile,
        cdnv_control=cfg.cdnv_control,
        sample_pairs=cfg.sample_pairs,
        sample_seed=cfg.sample_seed,
    )
    result.save(out)
    return MeasureOutcome(result.to_dict(), out, result.notes, result.warnings)


def read_inputs(train, validation=None, classifier=None, ood=None, tokenizer=None) -> Inputs:
    """The inputs of a measure, each a path or an object in memory.

    ``train``: a train stats file, a run dir (its ``stats/train.safetensors``) or a
    :class:`ClassStats`. ``validation``: a file or :class:`ValidationStats`; for train
    stats read from a file, None takes the same layer's ``validation*.safetensors``
    beside them. ``classifier``: anything :func:`load_classifier` takes; None takes the
    run's own model, when there is one. ``ood``: train stats of another corpus (NC5).
    ``tokenizer``: a tokenizer (anything with ``decode``), a dir or a hub id; None finds
    one offline (:func:`find_tokenizer`), else tokens stay ids.
    """
    inputs = Inputs(_stats_in(train, "train", "train"))
    meta = inputs.train.metadata
    if isinstance(train, str | os.PathLike):
        path = stats_path(train)
        inputs.run_dir = _run_dir(path)
        inputs.tag = layer_tag(path, meta)
        validation = _sibling_validation(path, validation, inputs.notes, inputs.tag)
        classifier = _run_classifier(classifier, inputs.run_dir, inputs.notes)
    else:
        inputs.tag = layer_tag(Path(), meta)
    if validation is not None:
        inputs.validation = _stats_in(validation, "validation", "validation")
    inputs.classifier = None if classifier is None else load_classifier(classifier)
    inputs.ood = None if ood is None else _stats_in(ood, "train", "ood")
    with _caught(inputs.warnings):
        inputs.tokenizer = find_tokenizer(tokenizer, inputs.run_dir, meta, inputs.train)
    return inputs


def measure_inputs(
    inputs: Inputs,
    conv: conventions.Convention,
    *,
    preset: str | None = None,
    device: str = "auto",
    tile: int | None = None,
    cdnv_control: bool = False,
    sample_pairs: int | None = None,
    sample_seed: int | None = None,
) -> Measurement:
    """Every metric (Eq. 2–11, :class:`Measurement`) and the per-class table of
    ``inputs``, with the model's identity, the data and the conventions beside them;
    with ``sample_pairs``, the pairwise ones estimated (:mod:`.sampled`)."""
    train = inputs.train
    chosen = pick_device(device)
    said = list(inputs.warnings)
    with _caught(said), _out_of_memory(chosen):
        result = measure(
            train,
            conv,
            inputs.classifier,
            inputs.validation,
            inputs.ood,
            tokens=decode_tokens(inputs.tokenizer, train),
            device=chosen,
            tile=tile,
            cdnv_control=cdnv_control,
            sample_pairs=sample_pairs,
            sample_seed=sample_seed,
        )
    measured = result.metrics
    if inputs.tag:  # the head on an inner layer's states is no loss of the model's
        measured = {k: v for k, v in measured.items() if k not in MODEL_ONLY}
    setting = {"preset": preset or DEFAULT_PRESET, **conv.as_dict()}
    metrics = {
        **_identity(inputs.run_dir, train.metadata),
        **describe_data(train.metadata, train.n_samples),
        **measured,
        **setting,
    }
    return Measurement(
        metrics,
        result.classes,
        {
            **setting,
            "device": str(chosen),
            "tile": tile,
            "cdnv_control": cdnv_control,
            "sample_pairs": sample_pairs,
            "sample_seed": sample_seed,
        },
        dict(train.metadata),
        inputs.tag,
        list(inputs.notes),
        said + _degenerate_warning(result),
    )


def describe_data(meta: dict, n_samples: int) -> dict:
    """What the page needs to name the data of train stats (Appendix A): S sequences of
    T tokens (N = S(T − 1) samples), the corpus and tokenizer the data dir's
    ``meta.json`` records, and a short SHA-256 of that ``meta.json`` that tells two data
    dirs apart. Only what the stats' metadata allows: statistics from other tools
    carry none."""
    out: dict = {}
    sequences = str(meta.get("sequences", ""))
    if sequences.isdigit() and int(sequences) > 0:
        out["n_sequences"] = int(sequences)
        if n_samples % int(sequences) == 0:
            out["seq_len"] = n_samples // int(sequences) + 1
    if meta.get("data_meta_sha256"):
        out["data_sha256"] = str(meta["data_meta_sha256"])[:12]
    data = Path(str(meta.get("data", ""))) / "meta.json"
    if meta.get("data") and data.is_file():
        try:
            recorded = json.loads(data.read_text())
        except (OSError, ValueError):
            recorded = None
        if isinstance(recorded, dict):
            if recorded.get("source"):
                out["corpus"] = corpus_label(recorded["source"])
            tok = recorded.get("tokenizer")
            if isinstance(tok, dict) and tok.get("name"):
                out["tokenizer"] = str(tok["name"])
    return out


def layer_tag(train_stats: Path, meta: dict) -> str:
    """``""`` for the last layer's stats, ``".layerNN"`` for block NN's: from
    the stats' ``layer`` metadata, else from a file name ``train.layerNN.safetensors``."""
    layer = meta.get("layer")
    if layer is not None and layer != "last":
        try:
            return f".layer{int(layer):02d}"
        except ValueError:
            pass
    found = re.search(r"\.layer\d+$", Path(train_stats).stem)
    return found.group(0) if found and layer is None else ""


@contextlib.contextmanager
def _caught(said: list[str]):
    """Warnings raised inside become lines of ``said``, for the caller to show or not."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            said.extend(str(w.message) for w in caught)


def _degenerate_warning(result: Measured) -> list[str]:
    n = result.metrics["n_degenerate_pairs"]
    if not n:
        return []
    interval = result.metrics.get("n_degenerate_pairs_ci95")
    said = f"{n:,}" if interval is None else f"about {n:,} (95%: {interval[0]:,}–{interval[1]:,})"
    return [
        f"{said} pair(s) of classes have coinciding means; they are left out "
        "of the CDNV (Eq. 4) and log-kernel (Eq. 7) means"
    ]


def _optional_path(value) -> Path | None:
    return None if value is None else Path(value)


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file: give a dir for metrics.json and classes.parquet")


@contextlib.contextmanager
def _out_of_memory(device: torch.device):
    """A failed allocation the estimates did not foresee is one error line too."""
    try:
        yield
    except (RuntimeError, MemoryError) as err:
        if not is_out_of_memory(err):
            raise
        other = " or use --device cpu" if device.type == "cuda" else ""
        raise UserError(
            f"out of memory on {device} while measuring: lower --tile or raise --min-count{other}"
        ) from None


def _run_dir(train_stats: Path) -> Path:
    """The run dir: the parent of ``stats/``, else the stats file's own dir."""
    parent = train_stats.resolve().parent
    return parent.parent if parent.name == "stats" else parent


def _stats_in(value, kind: str, role: str):
    """Statistics given as a path (a file or a run dir) or as an object in memory."""
    if isinstance(value, str | os.PathLike):
        return load_stats(value, kind=kind)
    expected = ClassStats if kind == "train" else ValidationStats
    if isinstance(value, dict):
        layers = ", ".join(repr(k) for k in value)
        raise UserError(
            f"the {role} statistics hold one object per layer ({layers}): measure one layer "
            f"at a time, e.g. {role}[{next(iter(value), 'last')!r}]"
        )
    if not isinstance(value, expected):
        other = "validation" if kind == "train" else "train"
        what = (
            f"{other} statistics"
            if isinstance(value, ClassStats | ValidationStats)
            else type(value).__name__
        )
        raise UserError(
            f"{what} given where {role} statistics belong: pass a stats file, a run dir or "
            f"the {expected.__name__} that collect_embeddings or load_stats returns"
        )
    return value


def _sibling_validation(train_stats: Path, given, notes: list[str], tag: str):
    """``given``, else the same layer's ``validation{tag}.safetensors`` beside the train
    stats, else None."""
    if given is None:
        sibling = train_stats.parent / f"validation{tag}.safetensors"
        if sibling.is_file() and sibling.resolve() != train_stats.resolve():
            notes.append(f"using validation stats {sibling}")
            return sibling
    return given


def _run_classifier(given, run_dir: Path, notes: list[str]):
    """``given``, else the run's own model (``model/`` of a trained run, or an
    ``epoch-E/`` dir itself), else None (no NC3)."""
    if given is None and (model := model_dir_of(run_dir)) is not None:
        notes.append(f"using the classifier of {model}")
        return str(model)
    return given


def _identity(run_dir: Path | None, meta: dict) -> dict:
    """model, width, depth, … as the trained model dir records them (its id, run and
    epoch), else from the run's config.json, else from the stats metadata."""
    ident = {"model": meta.get("model", run_dir.name if run_dir else "(in memory)")}
    if "layer" in meta:
        ident["layer"] = meta["layer"]
    if run_dir is None:
        return ident
    model = model_dir_of(run_dir)
    recorded = read_identity(model) if model is not None else None
    config = run_dir / "config.json"
    if recorded is not None:
        ident.update({k: recorded[k] for k in RUN_IDENTITY if k in recorded})
    elif config.is_file():
        try:
            data = json.loads(config.read_text())
        except ValueError:
            data = {}
        ident.update({k: data[k] for k in IDENTITY if k in data})
    return ident


# ---------------------------------------------------------------- tokens

# Any of these makes a dir a tokenizer's (fast, BPE vocab, SentencePiece, or its config).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def decode_tokens(tokenizer, train: ClassStats) -> dict[int, str] | None:
    """The text of every class with train samples (``tokenizer.decode([id])``), for the
    ``token`` column; None without a tokenizer (the column then holds the ids)."""
    if tokenizer is None:
        return None
    size = len(tokenizer) if hasattr(tokenizer, "__len__") else train.vocab_size
    ids = (train.counts > 0).nonzero().squeeze(1).tolist()
    return {i: tokenizer.decode([i]) for i in ids if i < size}


def find_tokenizer(
    source=None,
    run_dir: Path | None = None,
    meta: dict | None = None,
    train: ClassStats | None = None,
):
    """The tokenizer that decodes the token ids of a measure.

    ``source``: a tokenizer object (anything with ``decode``) or a dir or hub id to load
    (a :class:`UserError` if that fails). Otherwise the first found *offline* (nothing is
    downloaded) of: the run's model dir and ``RUN/tokenizer``; the model the stats'
    provenance names (a local dir, or a hub id already in the Hugging Face cache, at
    the recorded revision); the data dir's ``tokenizer/``. A tokenizer found must fit
    the ``train`` statistics: more tokens than their largest class with samples, no more
    than their classes (else it is another vocabulary). None when none is found.
    """
    if source is not None and not isinstance(source, str | os.PathLike):
        if not callable(getattr(source, "decode", None)):
            raise UserError(
                f"tokenizer: expected a tokenizer (with decode), a dir or a hub id, not "
                f"{type(source).__name__}"
            )
        return source
    if source is not None:
        return _load_tokenizer(str(source))
    meta = meta or {}
    for name, revision in _tokenizer_candidates(run_dir, meta):
        tok = _cached_tokenizer(name, revision)
        if tok is not None and (train is None or _fits(tok, train)):
            return tok
    return None


def _fits(tok, train: ClassStats) -> bool:
    """Whether a tokenizer can be the one the statistics' token ids come from."""
    seen = (train.counts > 0).nonzero()
    top = int(seen.max()) if seen.numel() else -1
    return top < len(tok) <= train.vocab_size


def local_tokenizer(run_dir: Path, source: str | None = None):
    """The tokenizer ``source`` names, else the run's (its model dir's, or
    ``RUN/tokenizer``) if one is there; None when the run has none."""
    return find_tokenizer(source, Path(run_dir), {})


def _tokenizer_candidates(run_dir: Path | None, meta: dict):
    """(name, revision) to try, most specific first: the run's, then the provenance's."""
    if run_dir is not None:
        yield str(model_dir_of(run_dir) or run_dir / "model"), None
        yield str(run_dir / "tokenizer"), None
    try:
        config = json.loads(meta.get("config") or "{}")
    except ValueError:
        config = {}
    config = config if isinstance(config, dict) else {}
    revision = meta.get("revision") or config.get("revision") or None
    for name in dict.fromkeys([config.get("model"), meta.get("model")]):
        if not isinstance(name, str) or not name:
            continue
        path = Path(name)
        if path.is_dir():
            yield str(model_dir_of(path) or path), None
            yield str(path / "tokenizer"), None  # a run dir's
        elif _HUB_ID.match(name):
            yield name, revision
    data = config.get("data") or meta.get("data")
    if isinstance(data, str) and data:
        yield str(Path(data) / "tokenizer"), None


def _cached_tokenizer(name: str, revision: str | None):
    """The tokenizer of a local dir or of a hub id in the local cache; None otherwise."""
    from transformers import AutoTokenizer

    local = Path(name).is_dir()
    if (local and not any((Path(name) / f).is_file() for f in TOKENIZER_FILES)) or (
        not local and Path(name).exists()
    ):
        return None  # transformers would make an empty tokenizer of a bare config
    try:
        kwargs = {"revision": revision} if revision and not local else {}
        return AutoTokenizer.from_pretrained(name, local_files_only=True, **kwargs)
    except Exception:  # no tokenizer files there: try the next, or keep ids
        return None


def _load_tokenizer(source: str):
    """A tokenizer the user named: a dir, or a hub id (from the cache, or the hub when
    it can be reached); a :class:`UserError` when it cannot be loaded."""
    from transformers import AutoTokenizer

    from lingcollapse.hub import load_pretrained

    path = Path(source)
    if path.is_file() or (path.is_dir() and not any((path / f).is_file() for f in TOKENIZER_FILES)):
        what = "a file" if path.is_file() else "a dir without tokenizer files"
        raise UserError(
            f"tokenizer {source} is {what} ({', '.join(TOKENIZER_FILES)}): pass a tokenizer "
            "dir, e.g. DATA_DIR/tokenizer"
        )
    try:
        return load_pretrained(AutoTokenizer.from_pretrained, source, "tokenizer")
    except UserError as err:
        raise UserError(f"{err} (pass a tokenizer dir, or leave the tokenizer out)") from None
    except Exception:  # e.g. a dir without tokenizer files: transformers raises many types
        raise UserError(f"cannot load tokenizer {source!r}; pass a tokenizer dir") from None
