"""The result of one measurement: the NC metrics, the per-class table and their setting.

``lingcollapse measure`` writes a :class:`Measurement` to ``metrics.json`` and
``classes.parquet``; :func:`lingcollapse.measure` returns it to a notebook. Its docstring
is the reference of every metric's definition.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lingcollapse.errors import UserError
from lingcollapse.io import atomic_path, make_parent, write_json
from lingcollapse.metrics.names import METRICS, arrow
from lingcollapse.metrics.report import format_value, interval_text, sampling_note, shown_value

if TYPE_CHECKING:  # pandas costs a quarter second to import
    import pandas as pd

LEGEND = (
    "↓/↑: smaller/larger means more collapse (or better generalization); "
    "→0: a signed CoV, collapse drives it towards zero"
)


@dataclass
class Measurement:
    r"""Every neural-collapse metric of one model's statistics, and the per-class table.

    **Notation** (Wu & Papyan, *Linguistic Collapse*, §3). The context embedding
    ``h = h(x_1..t)`` (the input of the output layer) is a sample of class ``c = x_{t+1}``.
    Of ``N_c`` train samples of class c, ``μ_c = (1/N_c) Σ h`` (Eq. 2) and
    ``σ_c² = (1/N_c) Σ ‖h − μ_c‖²`` (Eq. 3, summed over the d dimensions). The classes
    kept are ``S = {c : N_c ≥ min_count}``, ``C = |S|``; their centre is
    ``μ̄ = (1/C) Σ_{c∈S} μ_c`` (Eq. 2, unweighted); ``z_c = μ_c − μ̄`` and
    ``ẑ_c = z_c / ‖z_c‖``; ``Z`` stacks the ``z_c``. The output layer ``W h + b`` (Eq. 1)
    has rows ``w_c``, and ``W_S`` is W restricted to S. "Over pairs" means over the
    unordered pairs c < c' of S; std is the population std; CoV = std / mean (signed).
    Presets change conventions: ``papyan`` and ``zhu`` centre on the count-weighted mean
    of all samples, ``zhu`` divides σ_c² by N_c − 1, ``papyan``, ``zhu`` and ``galanti``
    take k = 0 in Eq. 4.

    **Metrics** (keys of :meth:`to_dict`; ↓ smaller, ↑ larger is more collapse):

    - ``nc1_cdnv`` ↓ — class-distance normalized variance (Eq. 4), the mean over pairs of
      ``σ̂_{c,c'} = (σ_c² + σ_c'²) / (2 ‖μ_c − μ_c'‖^(2+k))``, ``k = cdnv_power`` (2;
      k = 0 is Galanti's CDNV). ``nc1_cdnv_k0``: the same with k = 0, scale-invariant
      (``cdnv_control``). Pairs with ``μ_c = μ_c'`` are left out of Eq. 4 and Eq. 7 and
      counted in ``n_degenerate_pairs``.
    - ``nc1_covariance_ratio`` ↓ — Papyan's ``tr(Σ_W Σ_B⁺) / C`` with
      ``Σ_W = (1/N) Σ (h − μ_y)(h − μ_y)ᵀ`` over all samples and
      ``Σ_B = (1/C) Σ_{c∈S} z_c z_cᵀ``; ``nc1_quotient`` ↓ — Tirer's
      ``tr(Σ_W) / tr(Σ_B)``. Only when the covariance was collected.
    - ``nc2_norm_mean``, ``nc2_norm_std`` — mean and std over c of ``log ‖z_c‖``;
      ``nc2_equinorm_cov`` ↓ — their CoV, equinormness (Eq. 5:
      ``log ‖z_c‖ − log ‖z_c'‖ → 0``).
    - ``nc2_interference_mean`` ↓, ``nc2_interference_std`` — over pairs, the
      interference ``⟨ẑ_c, ẑ_c'⟩`` (Eq. 6; −1/(C − 1) for a simplex ETF);
      ``nc2_equiangular_cov`` ↓ — its CoV, equiangularity.
    - ``nc2_etf_error`` ↓ — Kothapalli's distance to a simplex ETF,
      ``‖ZZᵀ/‖ZZᵀ‖_F − (I − 11ᵀ/C)/√(C − 1)‖_F``.
    - ``gnc2_logkernel_mean`` ↓, ``gnc2_logkernel_std`` — over pairs, the logarithmic
      inverse-distance kernel ``log ‖ẑ_c − ẑ_c'‖⁻¹`` (Eq. 7);
      ``gnc2_uniformity_cov`` ↓ — its CoV, hyperspherical uniformity (GNC2).
    - ``nc3_duality_mean`` ↑, ``nc3_duality_std`` — over c, self-duality
      ``⟨w_c/‖w_c‖, ẑ_c⟩`` (Eq. 8, the same class c; → 1); ``unc3_duality_cov`` ↓ —
      its CoV, uniform duality (UNC3).
    - ``nc3_distance_mean`` ↓ — mean over c of ``‖w_c/‖w_c‖ − ẑ_c‖`` (Eq. 11).
    - ``nc3_dot_mean``, ``nc3_dot_std`` — mean and std over c of ``⟨w_c, z_c⟩``.
    - ``nc3_papyan_error`` ↓ — ``‖W_S/‖W_S‖_F − Z/‖Z‖_F‖_F``; ``nc3_zhu_error`` ↓ —
      ``‖W_S Zᵀ/‖W_S Zᵀ‖_F − (I − 11ᵀ/C)/√(C − 1)‖_F``. NC3 needs a classifier.
    - ``nc4_agreement`` ↑ — over the validation samples, the fraction where the linear
      decision equals the nearest class centre's (Eq. 9–10):
      ``argmax_{c∈S} ⟨w_c, h⟩ + b_c = argmin_{c∈S} ‖h − μ_c‖`` (uncentred means);
      ``ncc_acc`` ↑ — how often that nearest centre is the true next token.
    - ``nc5_ood_deviation`` ↓ — Ammar's mean over c of ``|cos(z_c, μ_G^ood − μ̄)|``, given
      statistics of an out-of-distribution corpus.
    - ``val_loss`` ↓, ``val_ppl`` ↓, ``val_acc`` ↑ — token-weighted mean cross-entropy
      over the full vocabulary, its exp, top-1 accuracy; ``n_val_samples``.
    - ``n_classes`` (C), ``n_samples`` (N), ``dim`` (d), ``vocab_size`` (V),
      ``samples_per_class_mean``/``_std`` (over S).

    **Sampled pairs** (``sample_pairs`` / ``measure --sample-pairs N``): the pairwise
    metrics are estimated from N uniformly drawn pairs (:mod:`lingcollapse.metrics.sampled`);
    each estimate ``NAME`` gets ``NAME_ci95`` = [low, high], its 95% interval, and
    ``sampling`` records the pairs drawn, the seed, the names ``estimated``, ``exact`` and
    ``skipped`` (with the reason). ``nc2_interference_mean`` stays exact (a closed form);
    so do the d×d closed forms while C·d² is small, else ``nc2_etf_error`` and
    ``nc3_zhu_error`` are estimated and ``nc1_covariance_ratio`` skipped;
    ``n_degenerate_pairs`` is estimated from the share of degenerate draws.

    Beside them: the model's identity (``model``, ``layer``, ``width``, ``depth``, … as
    recorded), the data (``n_sequences``, ``seq_len``, ``corpus``, ``tokenizer``), the
    ``preset`` and its conventions (``centre``, ``variance``, ``cdnv_power``,
    ``min_count``) — :attr:`settings`.

    **Per-class table** :attr:`classes` (one row per class of S): ``token_id``, ``token``
    (the decoded text when a tokenizer is known, else the id), ``count`` (N_c),
    ``sigma2`` (σ_c², Eq. 3), ``log_norm`` (``log ‖z_c‖``), ``cdnv_mean``,
    ``interference_mean``, ``logkernel_mean`` (row means over c' ≠ c of Eq. 4, 6, 7),
    ``duality_cos`` (Eq. 8), ``dot`` (``⟨w_c, z_c⟩``), ``val_count`` and
    ``agreement_rate`` (Eq. 10 among the validation samples of class c). With sampled
    pairs ``cdnv_mean`` and ``logkernel_mean`` are NaN (a class's row needs all its
    pairs); ``interference_mean`` is exact.
    """

    metrics: dict  # metric names → values, as metrics.json holds them (no checksum)
    classes: pd.DataFrame  # one row per kept class
    settings: dict = field(default_factory=dict)  # preset, conventions, device, tile
    provenance: dict = field(default_factory=dict)  # the train stats' metadata
    tag: str = ""  # "" for the last layer, ".layerNN" for block NN's
    notes: list[str] = field(default_factory=list)  # defaults chosen ("using …")
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """The metrics by name, with identity and conventions: ``metrics.json`` less its
        checksum (a copy)."""
        return dict(self.metrics)

    def __getitem__(self, name: str):
        return self.metrics[name]

    def save(self, out: str | os.PathLike) -> tuple[Path, Path]:
        """Write ``classes{tag}.parquet``, then ``metrics{tag}.json`` with its checksum
        (last: a metrics.json newer than the stats marks a finished measure), into the
        dir ``out``, as ``lingcollapse measure`` does. Returns both paths."""
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise UserError(f"{out} is a file: give a dir for metrics.json and classes.parquet")
        classes, metrics = output_paths(out, self.tag)
        make_parent(classes)
        with atomic_path(classes) as tmp:
            self.classes.to_parquet(tmp, index=False)
        write_json(metrics, self.metrics, checksum=True)
        return classes, metrics

    def rows(self) -> list[tuple[str, str, str]]:
        """(name, ↑/↓, formatted value) of every metric present, in the canonical order;
        an estimate from sampled pairs reads ``≈value 95% [low, high]``."""
        m = self.metrics
        return [
            (name, arrow(name), f"{shown_value(m, name)} {interval_text(m, name)}".strip())
            for name in METRICS
            if name in m
        ]

    def headline(self) -> str:
        """One line: the model, layer, C, N, d and the conventions."""
        m = self.metrics
        parts = [str(m.get("model", "?"))]
        if m.get("layer") not in (None, "last"):
            parts.append(f"layer {m['layer']}")
        parts += [
            f"C={format_value(m.get('n_classes'))}",
            f"N={format_value(m.get('n_samples'))}",
            f"d={format_value(m.get('dim'))}",
            f"{m.get('preset', '?')} (k={format_value(m.get('cdnv_power'))}, "
            f"min_count={m.get('min_count', '?')})",
        ]
        return " · ".join(parts)

    def __repr__(self) -> str:
        rows = self.rows()
        width = max([len(name) for name, _, _ in rows] + [6])
        lines = [f"Measurement: {self.headline()}"]
        lines += [f"  {name:<{width}}  {a:<2} {value:>13}" for name, a, value in rows]
        lines += [f"  {line}" for line in sampling_note(self.metrics)]
        lines.append(f"  {LEGEND}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        """The same table in a notebook."""
        body = "".join(
            f"<tr><td><code>{name}</code></td><td>{html.escape(a)}</td>"
            f"<td style='text-align:right'>{html.escape(value)}</td></tr>"
            for name, a, value in self.rows()
        )
        return (
            f"<p><b>Measurement</b>: {html.escape(self.headline())}</p>"
            f"<table><thead><tr><th>metric</th><th></th><th>value</th></tr></thead>"
            f"<tbody>{body}</tbody></table><p><small>"
            f"{'<br>'.join(html.escape(x) for x in [*sampling_note(self.metrics), LEGEND])}"
            "</small></p>"
        )


def output_paths(out: Path, tag: str = "") -> tuple[Path, Path]:
    """``classes{tag}.parquet`` and ``metrics{tag}.json``: each layer's beside the last's."""
    return out / f"classes{tag}.parquet", out / f"metrics{tag}.json"
