"""One self-contained interactive HTML page for an analyze/sweep/demo output dir.

Everything is inline (figures as SVG or base64 PNG, the styles and the script of
``assets/report.css`` and ``assets/report.js``, the data as JSON), so the page opens
offline and can be mailed as one file. Reads ``results.csv`` and
``correlations.json``, draws ``figures/`` when missing, and lists run configs from
``configs.json`` (written by ``analyze``) or from run dirs below DIR. From the run dirs
below DIR (or ``runs``) it embeds each model's most frequent classes with their
neighbours (:mod:`.explore`), each run's training curves, and ``layers.csv``.

The script sorts and filters every table, names and highlights a model wherever its
point or row is hovered, and draws the token explorer, the training curves and the
layer view from the embedded JSON. Without the script the page still reads: tables and
figures are plain HTML and SVG.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from lingcollapse.analysis.directions import (
    CI_SUFFIX,
    DIRECTION,
    IDENTITY,
    METRICS,
    arrow,
    is_metric,
)
from lingcollapse.analysis.explore import HIST_BINS, MAX_TOKENS, NEIGHBOURS
from lingcollapse.analysis.summary import ALPHA, format_p, significant, test_settings
from lingcollapse.errors import UserError, first_line
from lingcollapse.io import read_csv, read_json, write_text

# Order and captions of the figures on the page (paper numbering).
SECTIONS = (
    (
        "fig1_headline",
        "Figure 1 — the four headline properties against validation loss: NC1 "
        "(CDNV, Eq. 4), GNC2 (hyperspherical uniformity, Eq. 7), UNC3 (uniform duality, Eq. 8) and "
        "NC4 (classifier agreement, Eq. 10). One point per model, coloured by size.",
    ),
    (
        "fig2_nc2",
        "Figure 2 — equinormness (Eq. 5), equiangularity (Eq. 6) and hyperspherical "
        "uniformity (Eq. 7) against validation loss.",
    ),
    (
        "fig3_nc3",
        "Figure 3 — self-duality (NC3, Eq. 8) and uniform duality (UNC3) against validation loss.",
    ),
    (
        "decay",
        "Weight decay (§5.3) — each property of a model trained with β = 0.1 against the "
        "same model with β = 0.0005 (same architecture, schedule, epoch and seed); above the "
        "dashed line y = x a larger value, below it a smaller one. Each panel says in how "
        "many pairs the stronger decay gives more collapse and the paired sign-flip "
        "permutation test's p.",
    ),
    (
        "fig20_norms",
        "Figure 20 — the average log norm of the centred class means and its CoV "
        "(equinormness, NC2, Eq. 5) against validation loss.",
    ),
    (
        "fig21_interference",
        "Figure 21 — average interference (Eq. 6), its CoV (equiangularity, NC2) and the "
        "distance to a simplex ETF (Kothapalli) against validation loss; from the authors' "
        "2024-10 table, the raw dot products of centred means it stores instead of Eq. 6's "
        "cosines, named as such.",
    ),
    (
        "fig22_logkernel",
        "Figure 22 — the average log-kernel distance (Eq. 7) and its CoV (hyperspherical "
        "uniformity, GNC2) against validation loss. The authors' 2024-05 table computed the "
        "kernel on uncentred means (so did its Table 1 and Figure 1), labelled so.",
    ),
    (
        "fig27_duality",
        "Figure 27 — the average dot product ⟨w_c, μ_c − μ̄⟩ (for interpretation only), the "
        "average cosine (self-duality, NC3, Eq. 8) and the self-duality error ‖WZᵀ/‖WZᵀ‖ − "
        "ETF‖ (Zhu) against validation loss.",
    ),
    (
        "fig28_duality_spread",
        "Figure 28 — the spread of the dot products and the CoV of the cosines (uniform "
        "duality, UNC3) against validation loss.",
    ),
    (
        "seeds",
        "Table 1's setting — one architecture trained with many data-shuffling seeds: "
        "what remains of each correlation when scale is held fixed.",
    ),
)

# Figures over training and depth, each under its own heading (shown only when drawn).
TRAINING_SECTIONS = (
    (
        "fig5_epochs",
        "Figure 5: collapse over training",
        "Figure 5 (Appendix C) — NC1 (average CDNV, Eq. 4, log axis; left) and validation "
        "loss (right) against the number of epochs a model had been trained when it was "
        "measured, one row per weight decay β. One line per architecture: colour is width, "
        "marker and line style are depth; where an architecture has several seeds at one "
        "epoch, the point is their mean. As in the paper, the points of one line may come "
        "from runs with different schedule lengths: epoch 1 from a 1-epoch run, epoch 3 from "
        "a 3-epoch run, epochs 6 and 10 from a 10-epoch run measured after its 6th and 10th "
        "epochs. A line is therefore not one run's trajectory: a 3-epoch run ends with its "
        "learning rate decayed to zero, a 10-epoch run at epoch 6 is still at 40% of its "
        "peak (linear schedule, Appendix C).",
    ),
    (
        "training",
        "Training",
        "Every property of Figures 1–3 and validation loss against epochs trained, one line "
        "per training run (models sharing a <code>run</code>) measured after at least two "
        "epochs, coloured by model size (log scale); line style tells weight decays apart.",
    ),
    (
        "layers",
        "Layer-wise collapse",
        "Every property of Figures 1–3 and nearest-class-centre accuracy against depth, one "
        "line per model whose inner layers were collected (<code>collect --layers</code>): "
        "layer 0 is the token embeddings, layer i the output of block i, and the last point "
        "the input of the output layer (after the final norm), where the paper measures. "
        "Each layer's means and NC4 decisions are that layer's own; its validation loss is "
        "not shown, being the model's (table: <code>layers.csv</code>).",
    ),
)

def asset(name: str) -> str:
    """The text of ``analysis/assets/NAME`` (installed as package data)."""
    return resources.files("lingcollapse.analysis").joinpath("assets", name).read_text("utf-8")


def write_report(
    directory: Path,
    max_tokens: int = MAX_TOKENS,
    neighbours: int = NEIGHBOURS,
    runs: Path | None = None,
) -> Path:
    """Write ``DIR/report.html`` atomically and return its path.

    ``max_tokens``: classes of each model embedded for the token explorer (the most
    frequent; 0 leaves the explorer out), ``neighbours``: nearest and most interfering
    classes listed for each. ``runs``: where the models' run dirs are (default DIR).
    """
    directory = Path(directory)
    if max_tokens < 0 or neighbours < 0:
        raise UserError(
            f"--max-tokens and --neighbours must be ≥ 0, not {max_tokens} and {neighbours}"
        )
    if runs is not None and not Path(runs).is_dir():
        raise UserError(f"--runs {runs} is not a directory (give the dir holding the run dirs)")
    results = _results(directory)
    corr = _correlations(directory, results)
    # the run dirs' data first: a bad classes table stops the report before figures/
    extra = _interactive(directory, results, Path(runs or directory), max_tokens, neighbours)
    count = corr.get("permutations")
    figures = _figures(
        directory,
        results,
        corr.get("target", "val_loss"),
        count if isinstance(count, int) and count > 0 else None,
    )
    page = _page(directory, results, corr, figures, _configs(directory), extra)
    out = directory / "report.html"
    write_text(out, page)
    return out


def _results(directory: Path) -> pd.DataFrame:
    path = directory / "results.csv"
    if not path.is_file():
        raise UserError(
            f"{path} not found: give the --out dir of `lingcollapse analyze` (or a sweep/demo dir)"
        )
    try:
        return read_csv(path)
    except ValueError as err:  # pandas' EmptyDataError, ParserError; UnicodeDecodeError
        raise UserError(
            f"cannot read {path} ({first_line(err)}): run `lingcollapse analyze` "
            "with this --out again"
        ) from None


def _correlations(directory: Path, results: pd.DataFrame) -> dict:
    path = directory / "correlations.json"
    if path.is_file():
        corr = read_json(path, "run `lingcollapse analyze` with this --out again")
        if not isinstance(corr, dict):
            raise UserError(
                f"{path} is not the object `lingcollapse analyze` writes: run analyze with "
                "this --out again"
            )
        return corr
    from lingcollapse.analysis.correlation import correlate

    return correlate(results).as_json()  # the defaults of analyze: val_loss, 10⁵, seed 0


def _figures(
    directory: Path, results: pd.DataFrame, target: str, permutations: int | None
) -> list[Path]:
    fig_dir = directory / "figures"
    pngs = sorted(fig_dir.glob("*.png")) if fig_dir.is_dir() else []
    if not pngs:
        from lingcollapse.analysis.figures import make_figures

        layers = directory / "layers.csv"
        by_layer = read_csv(layers) if layers.is_file() else None
        make_figures(results, fig_dir, target, layers=by_layer, permutations=permutations)
        pngs = sorted(fig_dir.glob("*.png"))
    return pngs


def _configs(directory: Path) -> dict[str, dict]:
    path = directory / "configs.json"
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except ValueError:
            return {}
    configs = {}
    for metrics in sorted(directory.glob("**/metrics.json")):
        cfg = metrics.parent / "config.json"
        if cfg.is_file() and len(metrics.relative_to(directory).parts) <= 4:
            try:
                configs[str(metrics.parent.relative_to(directory))] = json.loads(cfg.read_text())
            except ValueError:
                continue
    return configs


def _page(directory, results, corr, figures, configs, extra: dict[str, str]) -> str:
    target = corr.get("target", "val_loss")
    sections = [
        ("findings", "Findings"),
        ("correlations", "Correlations"),
        ("figures", "Figures"),
        ("results", "Results"),
        *[(key, title) for key, title in _EXTRA_TITLES if extra.get(key)],
        *([("configs", "Configs")] if configs else []),
    ]
    nav = "".join(f"<a href='#{key}'>{title}</a>" for key, title in sections)
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width,initial-scale=1'>",
        f"<title>lingcollapse report — {html.escape(directory.name)}</title>",
        f"<style>{asset('report.css')}</style></head><body>",
        f"<nav class='top'><b>lingcollapse</b>{nav}</nav><main>",
        "<h1>Neural collapse and generalization</h1>",
        f"<p class='sub'>{len(results)} models · target <code>{html.escape(target)}</code> · "
        f"source <code>{html.escape(str(directory))}</code></p>",
        _data_html(results),
        _header(),
        "<div id='findings'></div>",
        _findings_html(results, corr),
        "<h2 id='correlations'>Correlation with generalization across models (§3.8)</h2>",
        _correlation_table(corr),
        _seed_section(results, target),
        "<h2 id='figures'>Figures</h2>",
        _figure_html(figures),
        "<h2 id='results'>Results (one row per model)</h2>",
        _downloads(directory),
        _results_table(results),
        *[extra[key] for key, _ in _EXTRA_TITLES if extra.get(key)],
        _configs_html(configs),
        "<p class='muted'>Made by <code>lingcollapse report</code>; self-contained, no "
        "external resources.</p></main>",
        "<div id='lc-tip' role='tooltip' hidden></div>",
        f"<script>{asset('report.js')}</script></body></html>",
    ]
    return "\n".join(parts)


_EXTRA_TITLES = (("tokens", "Tokens"), ("training", "Training curves"), ("layerview", "Layers"))


# (column, what the page calls it) for the data card, Appendix A's names.
_DATA_LABELS = (
    ("source", "table"),
    ("corpus", "corpus"),
    ("tokenizer", "tokenizer"),
    ("data_sha256", "data (meta.json SHA-256)"),
    ("n_sequences", "S sequences"),
    ("seq_len", "T tokens each"),
    ("n_samples", "N = S(T − 1) samples"),
    ("vocab_size", "V vocabulary"),
    ("n_classes", "C classes"),
    ("samples_per_class_mean", "samples per class"),
    ("samples_per_class_std", "± std"),
    ("lr", "learning rate"),
    ("batch_size", "batch size"),
)


def _data_html(results: pd.DataFrame) -> str:
    """What the models were trained and measured on: one row per distinct data and
    settings, with how many models share it (Appendix A's S, N, C, V, T)."""
    columns = [(c, label) for c, label in _DATA_LABELS if c in results.columns]
    if not columns:
        return (
            "<p class='sub'>The tables give no corpus, tokenizer or counts (S, N, C, V, T): "
            "measure with this version to record them.</p>"
        )
    names = [c for c, _ in columns]
    shown = results[names].astype(object).where(results[names].notna(), None)
    groups = shown.astype(str).groupby(names, sort=False)
    rows = []
    for _, part in groups:
        first = shown.loc[part.index[0]]
        cells = "".join(f"<td>{_num(_plain(first[c]))}</td>" for c in names)
        rows.append(f"<tr><td>{len(part)}</td>{cells}</tr>")
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label in columns)
    return (
        "<h2>Data</h2><p class='sub'>What the models were trained and measured on (Appendix "
        "A's counts of the train split; samples per class over the measured classes).</p>"
        f"<div class='scroll'><table class='lc-sort'><thead><tr><th>models</th>{head}</tr>"
        f"</thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def _plain(value):
    """numpy scalars as Python numbers, integral floats as ints (for display)."""
    if hasattr(value, "item"):
        value = value.item()
    if (
        isinstance(value, float)
        and math.isfinite(value)
        and value.is_integer()
        and abs(value) < 1e15
    ):
        return int(value)
    return value


def _findings_html(results: pd.DataFrame, corr: dict) -> str:
    """The paper's claims, each with the verdict this table gives and the test behind it."""
    from lingcollapse.analysis import DEFAULT_PERMUTATIONS
    from lingcollapse.analysis.findings import AGAINST, HOLDS, UNTESTABLE, findings

    target = str(corr.get("target", "val_loss"))
    count = corr.get("permutations")
    permutations = count if isinstance(count, int) and count > 0 else DEFAULT_PERMUTATIONS
    found = findings(results, target, permutations, int(corr.get("seed") or 0))
    if not found.items:
        return ""
    classes = {HOLDS: "holds", AGAINST: "against", UNTESTABLE: "untested"}
    rows = []
    for f in found.items:
        verdict = "against collapse" if f.verdict == AGAINST else f.verdict
        control = f"<br><span class='muted'>{html.escape(f.control)}</span>" if f.control else ""
        rows.append(
            f"<tr><td class='l'>{html.escape(f.claim)}</td><td class='l'>{html.escape(f.section)}"
            f"</td><td class='l {classes.get(f.verdict, '')}'>{html.escape(verdict)}</td>"
            f"<td class='l' style='white-space:normal'>{html.escape(f.evidence)}{control}</td></tr>"
        )
    counts = {v: sum(f.verdict == v for f in found.items) for v in classes}
    summary = (
        f"{counts[HOLDS]} hold, {counts[AGAINST]} go against, "
        f"{len(found.items) - sum(counts.values())} are not significant and "
        f"{counts[UNTESTABLE]} cannot be tested with these {found.n_models} models"
    )
    return (
        "<h2>Findings: which of the paper's claims hold here</h2>"
        f"<p class='sub'>Each verdict is computed from this table ({summary}); p &lt; {ALPHA} "
        f"two-sided, {permutations:,} permutations. <i>Against</i>: significant in the "
        "opposite direction, the metric moving against collapse. Claims about CDNV (k = 2, "
        "which changes when embeddings are scaled) repeat the test on the scale-invariant "
        "k = 0 CDNV as a control.</p>"
        "<div class='scroll'><table class='lc-sort'><thead><tr><th class='l'>claim</th>"
        "<th class='l'>paper</th><th class='l'>verdict</th><th class='l'>evidence</th></tr>"
        f"</thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def _header() -> str:
    return (
        "<div class='card'><p>Each model's last-layer context embeddings are grouped by the "
        "next token (the class). <b>NC1</b>: within-class variability shrinks relative to "
        "class-mean distances (CDNV, Eq. 4). <b>NC2</b>: centred class means become equinorm "
        "(Eq. 5) and equiangular (Eq. 6); <b>GNC2</b> relaxes this to hyperspherical "
        "uniformity (log inverse-distance kernel, Eq. 7). <b>NC3</b>: classifier rows align "
        "with centred class means (cosine, Eq. 8); <b>UNC3</b>: they align <i>uniformly</i> (low "
        "CoV). <b>NC4</b>: the linear classifier agrees with the nearest-class-centre "
        "classifier (Eq. 10). CoV = std / mean, signed (§3.3): where the mean is "
        "negative, as the log kernel of Eq. 7 usually is, a smaller spread shows as a CoV "
        "closer to zero from below, i.e. a <i>larger</i> value.</p>"
        "<p><b>↓ / ↑</b>: smaller / larger values mean more collapse. <b>R²</b> is the squared "
        "Pearson correlation with the target across models, of the raw values as in the "
        "paper's Table 1; <b>R² plotted</b> is that of the coordinates the figures draw "
        "(log CDNV on a log axis); <b>p</b> is a two-sided permutation test of Pearson's r "
        f"with its Monte-Carlo standard error. Rows with p &lt; {ALPHA} are shaded green where "
        "more collapse goes with better generalization and red (<i>against</i>) where it goes "
        "with worse.</p></div>"
    )


def _num(x, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, int) and not isinstance(x, bool):
        return f"{x:,}"
    if isinstance(x, float):
        return f"{x:.{digits}g}" if abs(x) >= 1e-4 or x == 0 else f"{x:.3e}"
    return html.escape(str(x))


def _pvalue(p) -> str:
    return "–" if p is None or not math.isfinite(p) else format_p(p).strip()


def _correlation_table(corr: dict) -> str:
    head = (
        "<thead><tr><th class='l'>metric</th><th>↑/↓</th><th>R²</th><th>R² plotted</th>"
        "<th>Pearson r</th><th>p</th><th>± se</th>"
        f"<th>p &lt; {ALPHA}</th><th class='l'>what it measures</th></tr></thead>"
    )
    rows = []
    better = _better_sign(str(corr.get("target")))
    for name, c in corr.get("metrics", {}).items():
        p = c.get("p_value")
        sig = significant(p if p is not None else math.nan)
        # a significant metric whose collapse goes with *worse* generalization is marked
        against = sig and better * (c.get("collapse_r") or 0.0) < 0
        verdict = ("against" if against else "yes") if sig else "no" if p is not None else "–"
        cells = [
            f"<td class='l'><code>{html.escape(name)}</code></td>",
            f"<td>{arrow(name)}</td>",
            f"<td>{_num(c.get('r2'), 6)}</td>",
            f"<td>{_plotted(c)}</td>",
            f"<td>{_num(c.get('pearson_r'), 3)}</td>",
            f"<td{_sort_key(p)}>{_pvalue(p)}</td>",
            f"<td{_sort_key(c.get('p_se'))}>"
            f"{'exact' if c.get('exact') else _pvalue(c.get('p_se'))}</td>",
            f"<td>{verdict}</td>",
            f"<td class='l'>{html.escape(METRICS.get(name, (0, ''))[1])}</td>",
        ]
        shade = "against" if against else "sig" if sig else ""
        rows.append(f"<tr class='{shade}'>{''.join(cells)}</tr>")
    n, settings = corr.get("n_models", "?"), test_settings(corr)
    return (
        f"<p class='sub'>{n} models, target <code>{html.escape(str(corr.get('target')))}</code>"
        f"{'; ' if settings else ''}{html.escape(settings)}.</p>"
        f"<div class='scroll'><table class='lc-sort corr'>{head}<tbody>{''.join(rows)}"
        "</tbody></table></div>"
    )


def _sort_key(value) -> str:
    """A cell's exact value for the page's sorting, where its text is not a plain number."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return f" data-v='{value!r}'"
    return ""


def _better_sign(target: str) -> int:
    """+1 where a larger target is better generalization (val_acc), else −1 (a loss)."""
    return 1 if DIRECTION.get(target, -1) > 0 else -1


def _plotted(c: dict) -> str:
    """The plotted R² where the figures draw other coordinates (log10), else "same"."""
    if c.get("plotted_as") != "log10":
        return "<span class='muted'>same</span>"
    return f"{_num(c.get('r2_plotted'), 6)} <span class='muted'>(log)</span>"


def _seed_section(results: pd.DataFrame, target: str) -> str:
    """Table 1's question for the largest many-seed group: does NC track generalization
    when scale is held fixed? (The defaults of analyze: 10⁵ permutations, seed 0.)"""
    from lingcollapse.analysis.correlation import correlate
    from lingcollapse.analysis.figures import seed_groups

    groups = seed_groups(results)
    if not groups or target not in results.columns:
        return ""
    group = groups[0]
    try:
        corr = correlate(group, target)
    except UserError:
        return ""
    first = group.iloc[0]
    what = ", ".join(
        f"{k} {first[k]:g}"
        for k in ("width", "depth", "epochs", "weight_decay")
        if k in group.columns
    )
    return (
        f"<h3>Table 1: a fixed architecture, {len(group)} seeds ({html.escape(what)})</h3>"
        "<p class='sub'>The setting of the paper's Table 1: only the data-shuffling seed "
        "varies, so these correlations are not explained by model scale.</p>"
        + _correlation_table(corr.as_json())
    )


def _figure_html(figures: list[Path]) -> str:
    if not figures:
        return "<p class='muted'>No figure could be drawn from this table.</p>"
    by_stem = {p.stem: p for p in figures}
    out = []
    for stem, caption in SECTIONS:
        if stem in by_stem:
            out.append(_img(by_stem.pop(stem), caption))
    for stem, heading, caption in TRAINING_SECTIONS:
        if stem in by_stem:
            out.append(f"<h3>{html.escape(heading)}</h3>")
            out.append(_img(by_stem.pop(stem), caption))
    scaling = {s: p for s, p in by_stem.items() if s.startswith("scaling_")}
    if scaling:
        out.append(
            "<h3>Scaling with width and depth (Appendices E–P)</h3><p class='sub'>One panel "
            "per epoch count, one row per weight decay; click a metric to open it.</p>"
        )
        out.extend(_scaling_html(scaling))
    rest = [p for s, p in by_stem.items() if not s.startswith("scaling_")]
    out.extend(_img(p, p.stem) for p in rest)
    return "\n".join(out)


def _scaling_html(scaling: dict[str, Path]) -> list[str]:
    """One collapsible block per metric (paper order), width then depth inside."""
    from lingcollapse.analysis.figures import SCALING

    metrics = list(dict.fromkeys(s.removeprefix("scaling_").rpartition("_vs_")[0] for s in scaling))
    metrics.sort(key=lambda m: SCALING.index(m) if m in SCALING else len(SCALING))
    out = []
    for i, metric in enumerate(metrics):
        figs = [scaling.get(f"scaling_{metric}_vs_{a}") for a in ("width", "depth")]
        desc = html.escape(METRICS.get(metric, (0, metric))[1])
        out.append(
            f"<details{' open' if i == 0 else ''}><summary><code>{html.escape(metric)}</code> "
            f"{arrow(metric)} — {desc}</summary>"
        )
        out.extend(_img(p, _scaling_caption(p.stem)) for p in figs if p is not None)
        out.append("</details>")
    return out


def _scaling_caption(stem: str) -> str:
    metric, _, along = stem.removeprefix("scaling_").rpartition("_vs_")
    other = "depth" if along == "width" else "width"
    return (
        f"<code>{html.escape(metric)}</code> {arrow(metric)} against {along}, a line per {other}."
    )


def _img(path: Path, caption: str) -> str:
    """The figure as inline SVG where its points carry hover titles (model ids), else as
    an embedded PNG."""
    svg = path.with_suffix(".svg")
    if svg.is_file() and svg.stat().st_size <= INLINE_SVG_BYTES:
        text = svg.read_text()
        if "</title></use>" in text:
            return (
                f"<figure class='svg'>{_inline_svg(text, path.stem)}"
                f"<figcaption>{caption} <span class='muted'>Hover over a point for its "
                "model.</span></figcaption></figure>"
            )
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f"<figure><img alt='{html.escape(path.stem)}' src='data:image/png;base64,{data}'>"
        f"<figcaption>{caption}</figcaption></figure>"
    )


INLINE_SVG_BYTES = 3_000_000
_SVG_ID = re.compile(r"""(\bid=")([^"]+)(")""")
_SVG_REF = re.compile(r"""((?:xlink:)?href="#|url\(#)([^")]+)""")


def _inline_svg(text: str, stem: str) -> str:
    """An SVG file as an element of the page: its prologue dropped, its ids prefixed so
    that several figures' markers and clip paths cannot collide, scaled to the page."""
    prefix = re.sub(r"[^A-Za-z0-9_-]", "-", stem) + "-"
    body = text[text.find("<svg") :]
    body = _SVG_ID.sub(lambda m: f"{m.group(1)}{prefix}{m.group(2)}{m.group(3)}", body)
    body = _SVG_REF.sub(lambda m: f"{m.group(1)}{prefix}{m.group(2)}", body)
    label = html.escape(stem)
    return body.replace("<svg", f"<svg role='img' aria-label='{label}' class='fig'", 1)


def _results_table(results: pd.DataFrame) -> str:
    ident = [c for c in IDENTITY if c in results.columns and results[c].notna().any()]
    metrics = [c for c in METRICS if c in results.columns]
    metrics += [c for c in results.columns if is_metric(str(c)) and c not in metrics]
    cols = ident + metrics
    head = "".join(
        f"<th class='{'l' if c == 'model' else ''}'>{html.escape(c)} "
        f"{arrow(c) if c in metrics else ''}</th>"
        for c in cols
    )
    body = []
    for _, row in results.iterrows():
        cells = "".join(
            f"<td class='{'l' if c == 'model' else ''}'{_sort_key(_py(row[c]))}"
            f"{_estimate_title(row, c)}>{_estimate_mark(row, c)}{_num(_py(row[c]))}</td>"
            for c in cols
        )
        model = html.escape(str(row["model"])) if "model" in cols else ""
        body.append(f"<tr data-model='{model}'>{cells}</tr>")
    sampled = any(f"{c}{CI_SUFFIX}_low" in results.columns for c in metrics)
    note = (
        "<p class='muted'>≈ an estimate from sampled pairs of classes (<code>measure "
        "--sample-pairs</code>); hover it for its 95% interval.</p>"
        if sampled
        else ""
    )
    return (
        "<div class='scroll wide'><table class='lc-sort results'>"
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>{note}"
    )


def _interval(row, column: str) -> tuple[float, float] | None:
    """The 95% interval of an estimated cell (``NAME_ci95_low``/``_high``), else None."""
    low, high = row.get(f"{column}{CI_SUFFIX}_low"), row.get(f"{column}{CI_SUFFIX}_high")
    try:
        low, high = float(low), float(high)
    except (TypeError, ValueError):
        return None
    return (low, high) if math.isfinite(low) and math.isfinite(high) else None


def _estimate_mark(row, column: str) -> str:
    return "≈" if _interval(row, column) is not None else ""


def _estimate_title(row, column: str) -> str:
    """The browser's tooltip of an estimated cell: its interval and the pairs drawn."""
    interval = _interval(row, column)
    if interval is None:
        return ""
    pairs = _py(row.get("sample_pairs"))
    drawn = f" from {pairs:,} sampled pairs" if isinstance(pairs, int) else " from sampled pairs"
    text = f"estimated{drawn}; 95% interval [{_num(interval[0])}, {_num(interval[1])}]"
    return f" title='{html.escape(text)}'"


def _py(x):
    """numpy scalars to Python ones (integers stay integers, as in the table)."""
    if hasattr(x, "item"):
        x = x.item()
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e15:
        return int(x)
    return x


def _configs_html(configs: dict[str, dict]) -> str:
    if not configs:
        return ""
    items = "".join(
        f"<details><summary>{html.escape(name)}</summary><pre>"
        f"{html.escape(json.dumps(cfg, indent=2, sort_keys=True))}</pre></details>"
        for name, cfg in configs.items()
    )
    return f"<h2>Run configurations</h2><div class='card'>{items}</div>"


def _downloads(directory: Path) -> str:
    """Links that save results.csv and correlations.json, their bytes carried by the
    page as data: URIs (it must work mailed as one file)."""
    links = []
    for name, kind in (("results.csv", "text/csv"), ("correlations.json", "application/json")):
        path = directory / name
        if path.is_file():
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            links.append(
                f"<a class='button' download='{name}' href='data:{kind};base64,{data}'>"
                f"⤓ {name}</a>"
            )
    if not links:
        return ""
    return f"<p class='downloads'>Download: {' '.join(links)}</p>"


def _json_script(element_id: str, data) -> str:
    """Data for the page's script, as JSON that cannot close its <script> element: every
    ``<`` (only ever inside a string: a token's text) is written as the escape ``\\u003c``,
    which JSON.parse reads back as ``<`` (``<\\!--`` would be no JSON escape at all)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    text = text.replace("<", "\\u003c")
    return f"<script type='application/json' id='{element_id}'>{text}</script>"


def _interactive(
    directory: Path, results: pd.DataFrame, root: Path, max_tokens: int, k: int
) -> dict[str, str]:
    """The sections the script draws: token explorer, training curves, layer view."""
    from lingcollapse.analysis.explore import model_runs, training_curves

    models = results["model"].astype(str).tolist() if "model" in results.columns else []
    runs = model_runs(root, models)
    return {
        "tokens": _token_section(runs, root, max_tokens, k) if max_tokens > 0 else "",
        "training": _curves_section(training_curves(root, runs)),
        "layerview": _layer_section(directory),
    }


# Characters of inner layers' token data one page embeds at most (see _token_section).
INNER_LAYER_CHARS = 8_000_000


def _token_section(runs: dict[str, Path], root: Path, max_tokens: int, k: int) -> str:
    """The explorer: per model, the last layer's embedded classes, neighbours, Tables
    4–5 views and histograms; per inner layer measured, the same while the inner layers'
    data stays within :data:`INNER_LAYER_CHARS` (models in table order, layers in depth
    order; from the first that would pass it on, its histograms only)."""
    from lingcollapse.analysis.explore import inner_layers, token_view

    scripts, index = [], []
    budget = [INNER_LAYER_CHARS]
    for model, run in runs.items():
        view = token_view(model, run, max_tokens, k, root)
        if view is None:
            continue
        element = f"lc-tokens-{len(index)}"
        scripts.append(_json_script(element, _view_json(view)))
        layers = []
        for layer in inner_layers(run):
            limits = (max_tokens, k, root)
            script, full = _inner_layer(view, run, layer, f"{element}-l{layer}", limits, budget)
            scripts.append(script)
            layers.append({"layer": layer, "id": f"{element}-l{layer}", "full": full})
        layers.append({"layer": None, "id": element, "full": True})
        index.append({"model": view.model, "run": view.run, "id": element, "layers": layers})
    if not index:
        return ""
    inner = any(len(entry["layers"]) > 1 for entry in index)
    return (
        "<h2 id='tokens'>Token explorer (Appendix Q, Tables 4–5)</h2>"
        "<p class='sub'>Per model, from its run's <code>classes.parquet</code> (one row per "
        "class): the count of train samples, σ² (within-class variance), the log "
        "norm of the centred mean, the row means of the CDNV (Eq. 4), interference (Eq. 6) "
        "and log kernel (Eq. 7), the duality cosine (Eq. 8), and the validation count and "
        "NC4 agreement rate. "
        f"<b>Embedded</b>: the {max_tokens:,} most frequent classes of each model (largest "
        "train count first, ties by token id; the rest are not in this page). "
        f"<b>Nearest</b>: the {k} embedded classes c′ with the smallest ‖μ_c − μ_c′‖ "
        "(uncentred class means). <b>Most interfering</b>: the {k} embedded classes with the "
        "largest cos(μ_c − μ̄, μ_c′ − μ̄), μ̄ the unweighted mean of all measured classes' "
        "means (Eqs. 2, 6). Both from the run's <code>stats/train.safetensors</code>, in "
        "float64. The top/bottom views rank <i>all</i> classes, as "
        "<code>lingcollapse inspect RUN --top/--bottom K --by COLUMN</code> does. "
        f"<b>Histograms</b> of a column are over <i>all</i> the model's classes (not only "
        f"the embedded ones), {HIST_BINS} bins computed when the page was made "
        "(<code>numpy.histogram</code>; on a log axis, log-spaced edges over the positive "
        "values); the searched token is marked on them.</p>"
        + (_LAYER_RULE if inner else "")
        + "<div class='card' id='lc-explorer'><noscript>The explorer needs JavaScript."
        "</noscript></div>" + _json_script("lc-token-index", index) + "".join(scripts)
    ).replace("{k}", str(k))


_LAYER_RULE = (
    "<p class='sub'><b>Layers</b>: where a run was measured layer-wise (its "
    "<code>classes.layerNN.parquet</code>), pick the layer (default: the last, the input "
    "of the output layer, as everywhere else in this report; layer 0 is the token "
    "embeddings, layer i the output of block i). Each layer's rows, neighbours (from "
    "<code>stats/train.layerNN.safetensors</code>) and views are its own. Inner layers "
    f"carry the same token data while it adds at most {INNER_LAYER_CHARS / 1e6:g} million "
    "characters to this page (models in table order, layers in depth order); from the "
    "first inner layer that would pass that on, an inner layer carries its histograms "
    "only, and the layer menu says so.</p>"
)


def _inner_layer(view, run: Path, layer: int, element: str, limits: tuple, budget: list[int]):
    """One inner layer's explorer data as a <script> and whether it holds the token
    data (True) or only the histograms; ``budget[0]`` is what is left of the
    characters allowed, set to 0 by the first layer that would pass it. ``limits``:
    (max_tokens, neighbours, root) as for the last layer."""
    from lingcollapse.analysis.explore import histograms, layer_classes, token_view

    if budget[0] > 0:
        inner = token_view(view.model, run, *limits, layer=layer)
        script = _json_script(element, _view_json(inner))
        if len(script) <= budget[0]:
            budget[0] -= len(script)
            return script, True
        budget[0] = 0
    classes = layer_classes(run, layer)
    data = {
        "model": view.model,
        "run": view.run,
        "layer": layer,
        "total": len(classes),
        "hist": _hist_json(histograms(classes)),
        "histOnly": True,
    }
    return _json_script(element, data), False


def _view_json(view) -> dict:
    """One model's explorer data, columnar; floats to 6 significant digits."""
    rows = view.rows
    columns = [c for c in ("token", "token_id") if c in rows.columns]  # the token first
    columns += [c for c in rows.columns if c not in columns]
    out = {
        "model": view.model,
        "run": view.run,
        "total": view.total,
        "columns": columns,
        "data": {c: _column_json(rows[c]) for c in columns},
        "note": view.note,
        "layer": view.layer,
        "hist": _hist_json(view.histograms),
    }
    if view.nearest is not None:
        out["nearest"] = view.nearest.tolist()
        out["nearest_value"] = _matrix_json(view.nearest_distance)
        out["interfering"] = view.interfering.tolist()
        out["interfering_value"] = _matrix_json(view.interfering_cos)
    out["extremes"] = {
        col: {side: _rows_json(part, columns) for side, part in sides.items()}
        for col, sides in view.extremes.items()
    }
    if view.average is not None:
        out["average"] = [_cell_json(view.average.get(c)) for c in columns]
    return out


def _hist_json(hists: dict[str, dict]) -> dict:
    """Histograms for the script: edges at full precision (bins of a narrow range must
    not collapse), counts as integers."""
    out = {}
    for column, hist in hists.items():
        item = {"missing": hist["missing"]}
        for key in ("edges", "counts", "log_edges", "log_counts"):
            if key in hist:
                item[key] = np.asarray(hist[key]).tolist()
        if "nonpositive" in hist:
            item["nonpositive"] = hist["nonpositive"]
        out[column] = item
    return out


def _column_json(values: pd.Series) -> list:
    if pd.api.types.is_integer_dtype(values):
        return [int(v) for v in values]
    if pd.api.types.is_float_dtype(values):
        return _floats_json(values.to_numpy(np.float64))
    return [None if v is None or v != v else str(v) for v in values]


def _floats_json(values: np.ndarray) -> list:
    return [float(f"{v:.6g}") if math.isfinite(v) else None for v in values.tolist()]


def _matrix_json(values: np.ndarray) -> list:
    return [_floats_json(row) for row in np.asarray(values, dtype=np.float64)]


def _rows_json(part: pd.DataFrame, columns: list[str]) -> list[list]:
    return [[_cell_json(row.get(c)) for c in columns] for _, row in part.iterrows()]


def _cell_json(value):
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float):
        return float(f"{value:.6g}") if math.isfinite(value) else None
    if value is None or isinstance(value, int | str):
        return value
    return None if value != value else str(value)


def _curves_section(curves) -> str:
    if not curves:
        return ""
    data = [
        {
            "run": c.run,
            "models": c.models,
            "train": [[_cell_json(v) for v in row] for row in c.train],
            "eval": [[_cell_json(v) for v in row] for row in c.evaluation],
        }
        for c in curves
    ]
    return (
        "<h2 id='training'>Training curves</h2>"
        "<p class='sub'>From each run's <code>log.jsonl</code>: training loss (the mean over "
        "the steps since the previous row) and validation loss, one line per run, against "
        "the optimizer step or the (fractional) epoch. Hover over a line for its run and "
        "value; click a run in the key to hide it.</p>"
        "<div class='card' id='lc-curves'><noscript>The curves need JavaScript.</noscript>"
        "</div>" + _json_script("lc-curves-data", data)
    )


def _layer_section(directory: Path) -> str:
    path = directory / "layers.csv"
    if not path.is_file():
        return ""
    try:
        layers = read_csv(path)
    except ValueError:
        return ""
    if not {"model", "layer_index"} <= set(layers.columns) or layers.empty:
        return ""
    metrics = [c for c in METRICS if c in layers.columns and layers[c].notna().any()]
    metrics += [
        c
        for c in layers.columns
        if c not in metrics and is_metric(str(c)) and pd.api.types.is_numeric_dtype(layers[c])
    ]
    if not metrics:
        return ""
    keep = ["model", "layer_index", "layer", *metrics]
    keep = [c for c in keep if c in layers.columns]
    rows = [[_cell_json(v) for v in row] for row in layers[keep].itertuples(index=False)]
    data = {
        "columns": keep,
        "rows": rows,
        "metrics": [
            {"name": m, "arrow": arrow(m), "what": METRICS.get(m, (0, ""))[1]} for m in metrics
        ],
    }
    return (
        "<h2 id='layerview'>Layer-wise collapse, by metric</h2>"
        "<p class='sub'>From <code>layers.csv</code>: pick a property to draw against depth "
        "(layer 0 = the token embeddings, the last point the input of the output layer), a "
        "line per model; the table below lists every model's layers.</p>"
        "<div class='card' id='lc-layers'><noscript>The layer view needs JavaScript.</noscript>"
        "</div>" + _json_script("lc-layers-data", data)
    )
