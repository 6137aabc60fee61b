"""One ``measure`` job: stats files → ``classes.parquet`` + ``metrics.json`` (DESIGN §3, §5).

:class:`MeasureConfig` holds the options of ``lingcollapse measure`` and checks them when
it is made, touching no input file, so a sweep can validate every stage before any work.
:func:`measure_files` then reads the stats (and finds the run's validation stats,
classifier and tokenizer when not given), computes every metric and writes the outputs.
It logs nothing: the notes and warnings come back for the caller to say or keep quiet.
"""

from __future__ import annotations

import contextlib
import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lingcollapse.device import check_device_name, pick_device
from lingcollapse.errors import UserError
from lingcollapse.io import atomic_path, write_json
from lingcollapse.memory import is_out_of_memory
from lingcollapse.metrics import conventions
from lingcollapse.metrics.classifier import load_classifier
from lingcollapse.metrics.compute import Measured, measure
from lingcollapse.models.ids import corpus_label
from lingcollapse.models.saved import model_dir_of, read_identity
from lingcollapse.stats.files import load_stats, stats_path

IDENTITY = ("model", "width", "depth", "n_params", "epochs", "weight_decay", "seed")
# Beside DESIGN's identity, what a trained model dir records (models.saved): the run it
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
    out: Path | None = None  # the run dir (the parent of stats/), else the stats' dir

    def __post_init__(self) -> None:
        self.train_stats = stats_path(self.train_stats)  # a run dir: its stats/train…
        self.validation = _optional_path(self.validation)
        self.ood = _optional_path(self.ood)
        self.out = _optional_path(self.out)
        self.convention()  # unknown --preset, --min-count < 1, --cdnv-power < 0
        if self.tile is not None and self.tile < 1:
            raise UserError(f"--tile must be positive, not {self.tile}")
        check_device_name(self.device)
        if self.out is not None:
            _check_out(self.out)

    def convention(self) -> conventions.Convention:
        """The preset with ``--min-count`` and ``--cdnv-power`` laid over it."""
        return conventions.resolve(
            self.preset, min_count=self.min_count, cdnv_power=self.cdnv_power
        )


@dataclass
class MeasureOutcome:
    """What :func:`measure_files` wrote, and what to tell the user about it."""

    metrics: dict  # the content of metrics.json, less its checksum
    out: Path  # the dir holding metrics.json and classes.parquet
    notes: list[str] = field(default_factory=list)  # defaults it chose ("using …")
    warnings: list[str] = field(default_factory=list)  # worth a "warning:" line each


def measure_files(cfg: MeasureConfig) -> MeasureOutcome:
    """Every metric of DESIGN §3 (Eq. 2–11) from ``cfg``'s files, written to its out dir.

    ``classes.parquet`` is written first and ``metrics.json`` last, with its checksum: a
    metrics.json newer than the stats marks a finished measure, even after a kill.
    """
    run_dir = _run_dir(cfg.train_stats)
    out = cfg.out or run_dir
    _check_out(out)  # again: the default, or a file made since the config was
    notes: list[str] = []
    train = load_stats(cfg.train_stats, kind="train")
    tag = layer_tag(cfg.train_stats, train.metadata)
    validation = _optional_validation(cfg.train_stats, cfg.validation, notes, tag)
    classifier = _classifier(cfg.classifier, run_dir, notes)
    ood = load_stats(cfg.ood, kind="train") if cfg.ood else None
    device = pick_device(cfg.device)
    conv = cfg.convention()
    with warnings.catch_warnings(record=True) as caught, _out_of_memory(device):
        warnings.simplefilter("always")
        tokens = _tokens(cfg.tokenizer, run_dir, train.vocab_size)
        result = measure(
            train,
            conv,
            classifier,
            validation,
            ood,
            tokens=tokens,
            device=device,
            tile=cfg.tile,
            cdnv_control=cfg.cdnv_control,
        )
    measured = result.metrics
    if tag:  # the head on an inner layer's states is no loss of the model's
        measured = {k: v for k, v in measured.items() if k not in MODEL_ONLY}
    metrics = {
        **_identity(run_dir, train.metadata),
        **describe_data(train.metadata, train.n_samples),
        **measured,
        "preset": cfg.preset or DEFAULT_PRESET,
        **conv.as_dict(),
    }
    _write(out, result, metrics, tag)
    said = [str(w.message) for w in caught] + _degenerate_warning(result)
    return MeasureOutcome(metrics, out, notes, said)


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
    """``""`` for the last layer's stats, ``".layerNN"`` for block NN's (DESIGN §9): from
    the stats' ``layer`` metadata, else from a file name ``train.layerNN.safetensors``."""
    layer = meta.get("layer")
    if layer is not None and layer != "last":
        try:
            return f".layer{int(layer):02d}"
        except ValueError:
            pass
    found = re.search(r"\.layer\d+$", Path(train_stats).stem)
    return found.group(0) if found and layer is None else ""


def outputs(out: Path, tag: str = "") -> tuple[Path, Path]:
    """``classes{tag}.parquet`` and ``metrics{tag}.json``: each layer's beside the last's."""
    return out / f"classes{tag}.parquet", out / f"metrics{tag}.json"


def _write(out: Path, result: Measured, metrics: dict, tag: str) -> None:
    classes, path = outputs(out, tag)
    with atomic_path(classes) as tmp:
        result.classes.to_parquet(tmp, index=False)
    # last, with its checksum: a metrics.json newer than the stats marks a finished measure
    write_json(path, metrics, checksum=True)


def _degenerate_warning(result: Measured) -> list[str]:
    n = result.metrics["n_degenerate_pairs"]
    if not n:
        return []
    return [
        f"{n} pair(s) of classes have coinciding means; they are left out "
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


def _optional_validation(train_stats: Path, path: Path | None, notes: list[str], tag: str):
    """``path``, else the same layer's ``validation{tag}.safetensors`` beside the train
    stats, else None."""
    if path is None:
        sibling = train_stats.parent / f"validation{tag}.safetensors"
        if sibling.is_file() and sibling.resolve() != train_stats.resolve():
            notes.append(f"using validation stats {sibling}")
            path = sibling
    return None if path is None else load_stats(path, kind="validation")


def _classifier(source: str | None, run_dir: Path, notes: list[str]):
    """``source``, else the run's own model (``model/`` of a trained run, or an
    ``epoch-E/`` dir itself), else None (no NC3)."""
    if source is None and (model := model_dir_of(run_dir)) is not None:
        source = str(model)
        notes.append(f"using the classifier of {source}")
    return None if source is None else load_classifier(source)


def _identity(run_dir: Path, meta: dict) -> dict:
    """model, width, depth, … as the trained model dir records them (its id, run and
    epoch), else from the run's config.json, else from the stats metadata."""
    ident = {"model": meta.get("model", run_dir.name)}
    if "layer" in meta:
        ident["layer"] = meta["layer"]
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


def _tokens(source: str | None, run_dir: Path, vocab_size: int) -> dict[int, str] | None:
    """Decoded text of every token id, if a tokenizer can be found offline."""
    tok = local_tokenizer(run_dir, source)
    if tok is None:
        return None
    return {i: tok.decode([i]) for i in range(min(vocab_size, len(tok)))}


def local_tokenizer(run_dir: Path, source: str | None = None):
    """The tokenizer ``source`` names, else the run's (its model dir's, or
    ``RUN/tokenizer``) if one is there; None when the run has none."""
    model = model_dir_of(run_dir)
    candidates = (
        [source] if source else [str(model or run_dir / "model"), str(run_dir / "tokenizer")]
    )
    for cand in candidates:
        if not cand or (not source and not Path(cand).is_dir()):
            continue
        try:
            from transformers import AutoTokenizer

            return AutoTokenizer.from_pretrained(cand)
        except Exception:  # no tokenizer files there: fall back to ids
            if source:
                raise UserError(f"cannot load tokenizer {source!r}; pass a tokenizer dir") from None
    return None
