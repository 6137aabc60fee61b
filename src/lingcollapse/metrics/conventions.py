"""Conventions that differ between neural-collapse papers, and named presets of them.

The defaults are the paper's (Wu & Papyan 2024): the centre μ̄ is the *unweighted* mean
of the class means (Eq. 2, footnote 9), σ_c² is the biased within-class variance
(Eq. 3, divided by N_c) and the CDNV carries the extra power k = 2 (Eq. 4).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from lingcollapse.errors import UserError, did_you_mean


@dataclass(frozen=True)
class Convention:
    centre: str = "unweighted"  # "unweighted": mean of class means; "weighted": by counts
    variance: str = "biased"  # "biased": M2/N_c; "unbiased": M2/(N_c − 1)
    cdnv_power: float = 2.0  # k of Eq. 4; 0 is Galanti et al.'s CDNV
    min_count: int = 1  # classes with fewer train samples are left out

    def __post_init__(self) -> None:
        if self.centre not in ("unweighted", "weighted"):
            raise UserError(f"centre must be 'unweighted' or 'weighted', not {self.centre!r}")
        if self.variance not in ("biased", "unbiased"):
            raise UserError(f"variance must be 'biased' or 'unbiased', not {self.variance!r}")
        if self.min_count < 1:
            raise UserError(f"--min-count must be at least 1, not {self.min_count}")
        if not self.cdnv_power >= 0:
            raise UserError(f"--cdnv-power must be ≥ 0, not {self.cdnv_power}")

    def as_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, Convention] = {
    # Wu & Papyan 2024 (this paper): unweighted centre, biased variance, k = 2.
    "wu-papyan": Convention(),
    # Papyan, Han & Donoho 2020: global mean over all samples (weighted by class counts);
    # NC1 is tr(Σ_W Σ_B⁺)/C (nc1_covariance_ratio); CDNV reported without the extra power.
    "papyan": Convention(centre="weighted", cdnv_power=0.0),
    # Zhu et al. 2021: as Papyan (global mean of the features), unbiased class variances.
    "zhu": Convention(centre="weighted", variance="unbiased", cdnv_power=0.0),
    # Galanti et al. 2022: the plain CDNV (k = 0) around class means.
    "galanti": Convention(cdnv_power=0.0),
}
ALIASES = {"wu": "wu-papyan", "paper": "wu-papyan", "default": "wu-papyan"}


def resolve(preset: str | None = None, **overrides) -> Convention:
    """A preset (default ``wu-papyan``) with explicit options laid over it."""
    name = ALIASES.get(preset or "wu-papyan", preset or "wu-papyan")
    if name not in PRESETS:
        hint = did_you_mean(name, [*PRESETS, *ALIASES])
        raise UserError(f"unknown preset {preset!r} (known: {', '.join(PRESETS)}){hint}")
    given = {k: v for k, v in overrides.items() if v is not None}
    return replace(PRESETS[name], **given)
