"""Grid files: which models a sweep trains or loads, and how every stage runs them.

A grid is a TOML file (see ``configs/paper.toml``, ``configs/pythia.toml`` and the demo's
``sweep/demo.toml``)::

    [data]        # options of `lingcollapse data prepare` (corpus, tokens, seq_len, …)
    [train]       # widths × depths × epochs × weight_decays × seeds, plus options
    [[train.extra]]   # more groups of the same keys (e.g. the 21 seed models of §3.8)
    [[models]]    # Hugging Face models measured as they are: id, revisions
    [collect]     # options of `lingcollapse collect` (batch_size, layers, dtype, …)
    [measure]     # options of `lingcollapse measure` (preset, min_count, cdnv_power)
    [analyze]     # options of `lingcollapse analyze` (target, permutations, seed)
    [executor]    # kind = "local" | "slurm", and [executor.slurm] resources

Every key is checked: an unknown key or an impossible value is a :class:`UserError` that
names it (with a "did you mean …?" where one is close).
"""

from __future__ import annotations

import difflib
import itertools
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lingcollapse.errors import UserError
from lingcollapse.models.ids import run_name

SECTIONS = {"data", "train", "models", "collect", "measure", "analyze", "executor", "name"}
GRID_KEYS = {"widths", "depths", "epochs", "weight_decays", "seeds"}
TRAIN_KEYS = GRID_KEYS | {"extra", "options"}
MODEL_KEYS = {"id", "revisions", "name"}
DATA_KEYS = {
    "corpus",
    "tokenizer",
    "vocab_size",
    "seq_len",
    "packing",
    "num_proc",
    "tokens",
    "seed",
    "validation_fraction",
    "text_column",
    "dataset_dir",
}
COLLECT_KEYS = {
    "batch_size", "checkpoint_every", "layers", "dtype", "covariance", "min_count", "device",
}  # fmt: skip
MEASURE_KEYS = {"preset", "min_count", "cdnv_power"}
ANALYZE_KEYS = {"target", "permutations", "seed"}
EXECUTOR_KEYS = {"kind", "slurm"}
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
}


@dataclass(frozen=True)
class Cell:
    """One model of the sweep: trained from the grid, or loaded from the hub."""

    name: str  # run dir name, in the paper's convention for trained models
    width: int | None = None
    depth: int | None = None
    epochs: int | None = None
    weight_decay: float | None = None
    seed: int | None = None
    hub_id: str | None = None
    revision: str | None = None

    @property
    def trained(self) -> bool:
        return self.hub_id is None

    def identity(self) -> dict:
        return {
            k: v
            for k, v in {
                "model": self.name,
                "width": self.width,
                "depth": self.depth,
                "epochs": self.epochs,
                "weight_decay": self.weight_decay,
                "seed": self.seed,
                "hub_id": self.hub_id,
                "revision": self.revision,
            }.items()
            if v is not None
        }


@dataclass
class Grid:
    """A parsed, validated grid file."""

    name: str
    data: dict
    train_options: dict
    cells: list[Cell]
    collect: dict
    measure: dict
    analyze: dict
    executor: str = "local"
    slurm: dict = field(default_factory=dict)
    source: dict = field(default_factory=dict)  # the raw TOML, recorded with the sweep


def load_grid(path: str | Path) -> Grid:
    path = Path(path)
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "not found"
        raise UserError(f"grid file {path} {what}: give a .toml file (see configs/ for examples)")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path} is not valid TOML: {err}") from None
    return parse_grid(raw, where=str(path))


def parse_grid(raw: dict, where: str = "grid") -> Grid:
    _known(raw, SECTIONS, where)
    data = _section(raw, "data", DATA_KEYS, where)
    train = _section(raw, "train", TRAIN_KEYS, where)
    cells = _trained_cells(train, where) + _hub_cells(raw.get("models", []), where)
    if not cells:
        raise UserError(
            f"{where}: the grid has no models: give [train] widths/depths/… "
            "or [[models]] with an id"
        )
    names = [c.name for c in cells]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UserError(f"{where}: the grid lists the model(s) {', '.join(dupes)} twice")
    executor = _section(raw, "executor", EXECUTOR_KEYS, where)
    kind = executor.get("kind", "local")
    if kind not in ("local", "slurm"):
        raise UserError(f"{where}: executor.kind must be 'local' or 'slurm', not {kind!r}")
    slurm = executor.get("slurm", {})
    _known(slurm, SLURM_KEYS, f"{where}: executor.slurm")
    return Grid(
        name=str(raw.get("name", Path(where).stem)),
        data=data,
        train_options=dict(train.get("options", {})),
        cells=cells,
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
            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UserError(
                f"{where}: unknown key {key!r}{hint} (known: {', '.join(sorted(allowed))})"
            )


def _section(raw: dict, name: str, allowed: set[str], where: str) -> dict:
    table = raw.get(name, {})
    _known(table, allowed, f"{where}: [{name}]")
    return dict(table)


def _trained_cells(train: dict, where: str) -> list[Cell]:
    groups = [{k: v for k, v in train.items() if k in GRID_KEYS}]
    for i, extra in enumerate(train.get("extra", [])):
        _known(extra, GRID_KEYS, f"{where}: [[train.extra]] #{i + 1}")
        groups.append(extra)
    cells = []
    for i, group in enumerate(groups):
        if not group:
            continue
        label = f"{where}: [train]" if i == 0 else f"{where}: [[train.extra]] #{i}"
        cells += _cells_of(group, label)
    return cells


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


def _cells_of(group: dict, label: str) -> list[Cell]:
    widths = _values(group, "widths", int, label)
    depths = _values(group, "depths", int, label)
    epochs = _values(group, "epochs", int, label, default=[1])
    decays = _values(group, "weight_decays", float, label, default=[0.0005])
    seeds = _values(group, "seeds", int, label, default=[0])
    return [
        Cell(run_name(d, w, e, wd, s), w, d, e, float(wd), s)
        for w, d, e, wd, s in itertools.product(widths, depths, epochs, decays, seeds)
    ]


def _hub_cells(models: list, where: str) -> list[Cell]:
    if not isinstance(models, list):
        raise UserError(f"{where}: [[models]] must be an array of tables")
    cells = []
    for i, entry in enumerate(models):
        label = f"{where}: [[models]] #{i + 1}"
        _known(entry, MODEL_KEYS, label)
        if not isinstance(entry.get("id"), str) or not entry["id"]:
            raise UserError(f'{label}: id is missing (e.g. id = "EleutherAI/pythia-70m")')
        revisions = entry.get("revisions", [None])
        if not isinstance(revisions, list) or not revisions:
            raise UserError(f"{label}: revisions must be a non-empty list")
        base = entry.get("name") or entry["id"].split("/")[-1]
        for rev in revisions:
            suffix = f"@{rev}" if rev else ""
            cells.append(Cell(_safe(base + suffix), hub_id=entry["id"], revision=rev))
    return cells


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._@-]+", "_", name)
