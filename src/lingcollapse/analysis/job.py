"""One ``analyze`` job: runs and tables → results table, correlations, figures.

:class:`AnalyzeConfig` holds the options of ``lingcollapse analyze`` and checks them when
it is made, reading no input, so a sweep can validate every stage before any work.
:func:`analyze` gathers the inputs into one table, correlates every metric with the
target (paper §3.8) and writes the results when given an out dir. It logs nothing: the
notes come back in the :class:`Correlations` for the caller to say or keep quiet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lingcollapse.analysis.correlation import (
    DEFAULT_PERMUTATIONS,
    Correlations,
    check_permutations,
    correlate,
)
from lingcollapse.analysis.table import Gathered, gather, select, write_results
from lingcollapse.errors import UserError
from lingcollapse.io import write_json


@dataclass
class AnalyzeConfig:
    """The options of ``lingcollapse analyze``, checked here with the flags' names."""

    inputs: list[Path]  # results tables (.csv/.parquet), run dirs, or sweep dirs
    published: list[Path] = field(default_factory=list)  # the authors' per-model tables
    select: list[str] = field(default_factory=list)  # globs on model ids or run names
    target: str = "val_loss"  # the generalization column
    permutations: int = DEFAULT_PERMUTATIONS  # permutation-test resamples
    seed: int = 0  # of the permutations
    out: Path | None = None  # results.csv/.parquet and correlations.json go here
    figures: bool = False  # also draw figures into out/figures
    class_counts: Path | None = None  # a data dir or train stats: Figure 4 with --figures

    def __post_init__(self) -> None:
        self.inputs = [Path(p) for p in self.inputs]
        self.published = [Path(p) for p in self.published]
        self.select = [str(p) for p in self.select]
        if any(not p.strip() for p in self.select):
            raise UserError("--select needs a glob on model ids or run names, e.g. '02x0768_*'")
        self.out = None if self.out is None else Path(self.out)
        self.class_counts = None if self.class_counts is None else Path(self.class_counts)
        if self.class_counts is not None and not self.figures:
            raise UserError("--class-counts draws Figure 4: give --figures (and --out) too")
        if self.figures and self.out is None:
            raise UserError("--figures needs --out DIR to draw into")
        check_permutations(self.permutations)


def analyze(cfg: AnalyzeConfig) -> Correlations:
    """R², Pearson r and permutation p-value of every metric vs the target, over every
    model of ``cfg.inputs`` (Table 1); written to ``cfg.out`` when given.

    The notes of gathering (and of the figures) come first in the result's ``notes``,
    then those of correlating.
    """
    counts = _class_counts(cfg.class_counts)  # a bad source fails before anything is written
    gathered = gather(cfg.inputs, tuple(cfg.published))
    select(gathered, cfg.select)
    corr = correlate(gathered.table, cfg.target, cfg.permutations, cfg.seed)
    if cfg.out is not None:
        _write(cfg, gathered, corr, counts)
    corr.notes = gathered.notes + corr.notes
    return corr


def _write(cfg: AnalyzeConfig, gathered: Gathered, corr: Correlations, counts=None) -> None:
    """results.csv/.parquet, correlations.json, configs.json and figures/ in ``cfg.out``."""
    write_results(gathered.table, cfg.out, gathered.layers)
    write_json(cfg.out / "correlations.json", corr.as_json())
    if gathered.configs:
        write_json(cfg.out / "configs.json", gathered.configs)
    if cfg.figures:
        # matplotlib is slow to import: only when figures are asked for
        from lingcollapse.analysis.figures import make_figures

        made = make_figures(
            gathered.table,
            cfg.out / "figures",
            cfg.target,
            layers=gathered.layers,
            permutations=cfg.permutations,
        )
        if counts is not None:
            made.extend(_class_counts_figure(counts, cfg.out / "figures"))
        gathered.notes.append(f"{len(made)} figure(s) in {cfg.out / 'figures'}")


def _class_counts(source: Path | None):
    """The class counts of ``--class-counts`` (a data dir, train stats or a run), if any."""
    if source is None:
        return None
    from lingcollapse.data.counts import class_counts

    return class_counts(source)


def _class_counts_figure(counts, out: Path) -> list[Path]:
    """Figure 4 from the counts, its tokens decoded where the data has a tokenizer."""
    from lingcollapse.analysis.figures import figure_class_counts, save
    from lingcollapse.data.counts import load_tokenizer_of

    fig = figure_class_counts(counts, tokenizer=load_tokenizer_of(counts))
    return [] if fig is None else save(fig, out / "fig4_class_counts")
