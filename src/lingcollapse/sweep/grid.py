"""Grid files: which runs a sweep trains, which models it measures, and how.

A grid is a TOML file (see the bundled grids in ``lingcollapse/configs/``: ``paper.toml``,
``pythia.toml``, the demo's ``demo.toml``; :mod:`lingcollapse.sweep.bundled`)::

    [data]            # options of `data prepare` (corpus, tokens, seq_len, …)
    [train]           # a group: widths × depths × epochs × weight_decays × seeds,
                      #   measured after measure_epochs (default: the last), and options
    [[train.extra]]   # more groups; a key a group leaves out is taken from [train]
    [[models]]        # Hugging Face models measured as they are: id, revisions, name,
                      #   tokenizer (their own data dir), config (their shape, for --plan)
    [collect]         # options of `collect` (batch_size, layers, dtype, …)
    [measure]         # options of `measure` (preset, min_count, cdnv_power, …)
    [analyze]         # options of `analyze` (target, permutations, seed)
    [executor]        # kind = "local" | "slurm", and [executor.slurm] resources

A group trains every run of its product and measures each after the epochs of
``measure_epochs`` (counted from 1): the paper's 10-epoch runs are measured after epochs
6 and 10 (``measure_epochs = [6, 10]``), so one run gives two models. Every model is
named by its authors'-style id (:mod:`lingcollapse.models.ids`), the ``model`` column of
the results. A run in two groups, or an epoch past a run's training, is an error.

Every key is checked: an unknown key or an impossible value is a :class:`UserError` that
names it (with a "did you mean …?" where one is close). The options of each stage are
the fields of that stage's config (``PrepareConfig``, ``TrainConfig``, ``CollectConfig``,
``MeasureConfig``, ``AnalyzeConfig``), less those the sweep sets itself.

A ``[[models]]`` entry may name its own ``tokenizer``: models whose tokenizers differ
cannot share token ids, so the sweep tokenises ``[data]``'s corpus once more for each
tokenizer that is not ``[data]``'s (``OUT/data-<tokenizer>``). It may also declare its
``config``, the keys of its ``config.json`` that fix its size (:data:`DECLARED`): the
plan then sizes its jobs offline (:mod:`lingcollapse.sweep.resources`), and the sweep
checks the real config.json against them before collecting.
"""

from __future__ import annotations

import itertools
import math
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from lingcollapse.analysis.job import AnalyzeConfig
from lingcollapse.collect.run import CollectConfig
from lingcollapse.data.prepare import PrepareConfig
from lingcollapse.errors import UserError, did_you_mean
from lingcollapse.metrics.job import MeasureConfig
from lingcollapse.models import ids, registry
from lingcollapse.train.config import TrainConfig

SECTIONS = {"data", "train", "models", "collect", "measure", "analyze", "executor", "name"}
GROUP_KEYS = {"widths", "depths", "epochs", "weight_decays", "seeds", "measure_epochs"}
TRAIN_KEYS = GROUP_KEYS | {"extra", "options"}
MODEL_KEYS = {"id", "revisions", "name", "tokenizer", "config"}
EXECUTOR_KEYS = {"kind", "slurm"}
# config.json keys a [[models]] entry may declare, with their types: what its weights and
# a forward pass's memory depend on (the rest, e.g. rotary settings, add no parameters).
DECLARED = {
    "model_type": str,
    "vocab_size": int,
    "hidden_size": int,
    "num_hidden_layers": int,
    "num_attention_heads": int,
    "num_key_value_heads": int,  # grouped-query attention; default num_attention_heads
    "intermediate_size": int,
    "tie_word_embeddings": bool,
}
DECLARED_OPTIONAL = {"num_key_value_heads"}
SLURM_KEYS = {
    "partition",
    "account",
    "qos",
    "gpus_per_node",
    "cpus_per_task",
    "mem_gb",
    "hours_per_epoch",
    "collect_hours",
    "max_parallel",
    "constraint",
    "gpu_memory",  # per GPU, e.g. "80GB": sizes the jobs of models that declare a config
    "tflops",  # sustained TFLOP/s of one GPU, assumed for their time limits
}
SIZE_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
SIZE_UNITS |= {"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def _options(cls, sweep_sets: set[str]) -> set[str]:
    """A stage's grid keys: its config's fields, less what the sweep sets per model."""
    return {f.name for f in fields(cls)} - sweep_sets


DATA_KEYS = _options(PrepareConfig, {"out", "overwrite"})
TRAIN_OPTIONS = _options(
    TrainConfig, {"data", "out", "width", "depth", "epochs", "weight_decay", "seed", "save_epochs"}
)
COLLECT_KEYS = _options(CollectConfig, {"model", "data", "split", "out", "revision", "train_stats"})
MEASURE_KEYS = _options(MeasureConfig, {"train_stats", "validation", "classifier", "ood", "out"})
ANALYZE_KEYS = _options(AnalyzeConfig, {"inputs", "published", "out", "figures", "class_counts"})


@dataclass(frozen=True)
class Run:
    """One training run of the grid."""

    name: str  # the run dir, e.g. TinyStories-02x0768_10L
    width: int
    depth: int
    epochs: int
    weight_decay: float
    seed: int
    measure_epochs: tuple[int, ...]  # the models it gives, after these epochs (from 1)
    family: str = "gpt-neo"

    @property
    def save_epochs(self) -> list[int]:
        """The epochs kept as ``epoch-E/`` dirs; the last is the run's own ``model/``."""
        return [e for e in self.measure_epochs if e != self.epochs]

    def model_id(self, epoch: int) -> str:
        """The authors'-style id of this run's model after ``epoch``."""
        args = (self.depth, self.width, self.epochs, self.weight_decay, self.seed, epoch)
        return ids.model_id(*args, family=self.family)


@dataclass(frozen=True)
class Model:
    """One measured model: a run after an epoch, or a Hugging Face model as it is."""

    name: str  # the results' `model`: the authors'-style id, or the hub model's name
    run: Run | None = None
    epoch: int | None = None  # from 1
    hub_id: str | None = None
    revision: str | None = None
    tokenizer: str | None = None  # its own, when not [data]'s: its own data dir
    declared: tuple[tuple[str, Any], ...] = ()  # (key, value) of its declared config.json

    @property
    def trained(self) -> bool:
        return self.run is not None

    @property
    def config(self) -> dict:
        """The config.json keys the grid declares for it ({} when none)."""
        return dict(self.declared)

    def path(self, out: Path) -> Path:
        """Where its stats, metrics.json and classes.parquet go (and its weights, for a
        trained model): ``runs/RUN`` (the last epoch), ``runs/RUN/epoch-E``, ``runs/NAME``."""
        if self.run is None:
            return out / "runs" / self.name
        run = out / "runs" / self.run.name
        return run if self.epoch == self.run.epochs else run / f"epoch-{self.epoch}"

    def source(self, out: Path) -> str:
        """The MODEL that ``collect`` loads."""
        return self.hub_id if self.run is None else str(self.path(out))

    def identity(self) -> dict:
        """What a hub model's run dir records (trained models carry their own)."""
        found = {"model": self.name, "hub_id": self.hub_id, "revision": self.revision}
        return {k: v for k, v in found.items() if v is not None}


@dataclass
class Grid:
    """A parsed, validated grid file."""

    name: str
    data: dict
    train_options: dict
    runs: list[Run]
    models: list[Model]
    collect: dict
    measure: dict
    analyze: dict
    executor: str = "local"
    slurm: dict = field(default_factory=dict)
    source: dict = field(default_factory=dict)  # the raw TOML, recorded with the sweep

    def jobs(self) -> list[tuple[Run | None, list[Model]]]:
        """The units of work: each run with the models it gives, then each hub model."""
        by_run = [(run, [m for m in self.models if m.run is run]) for run in self.runs]
        return by_run + [(None, [m]) for m in self.models if m.run is None]


def load_grid(path: str | Path) -> Grid:
    path = Path(path)
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "not found"
        raise UserError(
            f"grid file {path} {what}: give a .toml file (or a bundled grid's name: sweep --list)"
        )
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path} is not valid TOML: {err}") from None
    return parse_grid(raw, where=str(path))


def parse_grid(raw: dict, where: str = "grid") -> Grid:
    _known(raw, SECTIONS, where)
    data = _section(raw, "data", DATA_KEYS, where)
    train = _section(raw, "train", TRAIN_KEYS, where)
    options = train.get("options", {})
    _known(options, TRAIN_OPTIONS, f"{where}: [train] options")
    corpus = ids.corpus_label(str(data.get("corpus", PrepareConfig.corpus)))
    family = registry.resolve_name(str(options.get("family", "gpt-neo")))
    runs, models = _trained(train, corpus, family, where)
    models += _hub_models(raw.get("models", []), where)
    if not models:
        raise UserError(
            f"{where}: the grid has no models: give [train] widths/depths/… "
            "or [[models]] with an id"
        )
    names = [m.name for m in models]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UserError(f"{where}: the grid lists the model(s) {', '.join(dupes)} twice")
    executor = _section(raw, "executor", EXECUTOR_KEYS, where)
    kind = executor.get("kind", "local")
    if kind not in ("local", "slurm"):
        raise UserError(f"{where}: executor.kind must be 'local' or 'slurm', not {kind!r}")
    slurm = executor.get("slurm", {})
    _known(slurm, SLURM_KEYS, f"{where}: executor.slurm")
    _planning(slurm, f"{where}: [executor.slurm]")
    return Grid(
        name=str(raw.get("name", Path(where).stem)),
        data=data,
        train_options=dict(options),
        runs=runs,
        models=models,
        collect=_section(raw, "collect", COLLECT_KEYS, where),
        measure=_section(raw, "measure", MEASURE_KEYS, where),
        analyze=_section(raw, "analyze", ANALYZE_KEYS, where),
        executor=kind,
        slurm=slurm,
        source=raw,
    )


def _known(table: Any, allowed: set[str], where: str) -> None:
    if not isinstance(table, dict):
        raise UserError(f"{where}: expected a table of keys, got {type(table).__name__}")
    for key in table:
        if key not in allowed:
            hint = did_you_mean(key, sorted(allowed))
            raise UserError(
                f"{where}: unknown key {key!r}{hint} (known: {', '.join(sorted(allowed))})"
            )


def _section(raw: dict, name: str, allowed: set[str], where: str) -> dict:
    table = raw.get(name, {})
    _known(table, allowed, f"{where}: [{name}]")
    return dict(table)


def _trained(train: dict, corpus: str, family: str, where: str) -> tuple[list[Run], list[Model]]:
    """Every group's runs and models; ``[[train.extra]]`` groups inherit [train]'s keys."""
    base = {k: v for k, v in train.items() if k in GROUP_KEYS}
    extras = train.get("extra", [])
    if not isinstance(extras, list):
        raise UserError(f"{where}: [[train.extra]] must be an array of tables")
    groups = [(f"{where}: [train]", base)] if base else []
    for i, extra in enumerate(extras):
        label = f"{where}: [[train.extra]] #{i + 1}"
        _known(extra, GROUP_KEYS, label)
        groups.append((label, {**base, **extra}))
    runs: dict[str, tuple[Run, str]] = {}
    models: list[Model] = []
    for label, group in groups:
        for run in _runs_of(group, label, corpus, family):
            if run.name in runs:
                first = runs[run.name][1]
                who = f"{label} lists" if first == label else f"{first} and {label} both list"
                raise UserError(f"{who} the run {run.name} twice: give each run once")
            runs[run.name] = (run, label)
            models += [Model(run.model_id(epoch), run, epoch) for epoch in run.measure_epochs]
    return [run for run, _ in runs.values()], models


def _values(group: dict, key: str, kind: type, label: str, default=None) -> list:
    values = group.get(key, default)
    if values is None:
        raise UserError(f"{label}: {key} is missing (a list, e.g. {key} = [1])")
    if not isinstance(values, list) or not values:
        raise UserError(f"{label}: {key} must be a non-empty list, not {values!r}")
    for v in values:
        ok = (
            isinstance(v, int | float) and not isinstance(v, bool)
            if kind is float
            else isinstance(v, int) and not isinstance(v, bool)
        )
        if not ok or v < 0 or (kind is int and key != "seeds" and v < 1):
            raise UserError(f"{label}: {key} holds the impossible value {v!r}")
    return values


def _runs_of(group: dict, label: str, corpus: str, family: str) -> list[Run]:
    widths = _values(group, "widths", int, label)
    depths = _values(group, "depths", int, label)
    epochs = _values(group, "epochs", int, label, default=[1])
    decays = _values(group, "weight_decays", float, label, default=[0.0005])
    seeds = _values(group, "seeds", int, label, default=[ids.DEFAULT_SEED])
    measured = group.get("measure_epochs")
    if measured is not None:
        measured = sorted(set(_values(group, "measure_epochs", int, label)))
        past = [e for e in measured if e > min(epochs)]
        if past:
            raise UserError(
                f"{label}: measure_epochs {past} is past the {min(epochs)} epoch(s) its runs "
                "train; measure within each run's epochs"
            )
    return [
        Run(
            ids.run_name(d, w, e, float(wd), s, family=family, corpus=corpus),
            w,
            d,
            e,
            float(wd),
            s,
            tuple(measured or [e]),
            family,
        )
        for w, d, e, wd, s in itertools.product(widths, depths, epochs, decays, seeds)
    ]


def _hub_models(models: list, where: str) -> list[Model]:
    if not isinstance(models, list):
        raise UserError(f"{where}: [[models]] must be an array of tables")
    found = []
    for i, entry in enumerate(models):
        label = f"{where}: [[models]] #{i + 1}"
        _known(entry, MODEL_KEYS, label)
        if not isinstance(entry.get("id"), str) or not entry["id"]:
            raise UserError(f'{label}: id is missing (e.g. id = "EleutherAI/pythia-70m")')
        revisions = entry.get("revisions", [None])
        if not isinstance(revisions, list) or not revisions:
            raise UserError(f"{label}: revisions must be a non-empty list")
        tokenizer = entry.get("tokenizer")
        if tokenizer is not None and (not isinstance(tokenizer, str) or not tokenizer):
            raise UserError(f"{label}: tokenizer must be a hub id or a path, not {tokenizer!r}")
        declared = _declared(entry.get("config"), label) if "config" in entry else ()
        base = entry.get("name") or entry["id"].split("/")[-1]
        for rev in revisions:
            suffix = f"@{rev}" if rev else ""
            name = _safe(base + suffix)
            found.append(Model(name, None, None, entry["id"], rev, tokenizer, declared))
    return found


def _declared(config: Any, label: str) -> tuple[tuple[str, Any], ...]:
    """A ``config = {…}`` table checked key by key: known keys (:data:`DECLARED`) of the
    right types, the required ones present, a causal LM type transformers knows."""
    where = f"{label}: config"
    _known(config, set(DECLARED), where)
    missing = sorted(set(DECLARED) - DECLARED_OPTIONAL - set(config))
    if missing:
        raise UserError(f"{where} lacks {', '.join(missing)}: copy them from its config.json")
    for key, value in config.items():
        kind = DECLARED[key]
        ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
        if not ok or (kind is int and value < 1) or (kind is str and not value):
            wanted = {int: "a whole number ≥ 1", bool: "true or false", str: "a name"}[kind]
            raise UserError(f"{where}.{key} = {value!r}: give {wanted}, as in its config.json")
    heads = config["num_attention_heads"]
    if config["hidden_size"] % heads or heads % config.get("num_key_value_heads", heads):
        raise UserError(
            f"{where}: hidden_size {config['hidden_size']} must split into "
            f"num_attention_heads {heads}, and these into num_key_value_heads groups"
        )
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    model_type = config["model_type"]
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        hint = did_you_mean(model_type, sorted(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES))
        raise UserError(
            f"{where}.model_type = {model_type!r} is not a causal LM type of the installed "
            f"transformers{hint} (e.g. gpt_neox, llama, qwen2)"
        )
    return tuple(sorted(config.items()))


def parse_size(text: Any, where: str) -> int:
    """Bytes of ``"80GB"`` (10⁹) or ``"40GiB"`` (2³⁰), as ``[executor.slurm] gpu_memory``
    gives them; anything else is a :class:`UserError` naming ``where``."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)\s*", str(text), re.IGNORECASE)
    if not isinstance(text, str) or not found or float(found[1]) <= 0:
        raise UserError(
            f'{where} = {text!r}: give a size with its unit, e.g. "80GB" (10⁹ bytes) or '
            '"80GiB" (2³⁰ bytes)'
        )
    return int(float(found[1]) * SIZE_UNITS[found[2].upper()])


def _planning(slurm: dict, where: str) -> None:
    """The planner's settings of [executor.slurm]: a size per GPU, a positive TFLOP/s."""
    if "gpu_memory" in slurm:
        parse_size(slurm["gpu_memory"], f"{where} gpu_memory")
    tflops = slurm.get("tflops", 1.0)
    number = isinstance(tflops, int | float) and not isinstance(tflops, bool)
    if not number or not 0 < tflops < math.inf:
        raise UserError(f"{where} tflops = {tflops!r}: give a number of TFLOP/s > 0, e.g. 100")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._@-]+", "_", name)
