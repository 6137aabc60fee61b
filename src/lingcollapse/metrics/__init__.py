"""NC metrics: statistics → values, one function per property (each metric is defined,
with the paper's equation, in :class:`lingcollapse.metrics.result.Measurement`)."""

from lingcollapse.metrics.compute import Measured, measure
from lingcollapse.metrics.conventions import PRESETS, Convention, resolve
from lingcollapse.metrics.names import DIRECTION, METRICS, arrow
from lingcollapse.metrics.pairwise import pairwise_metrics

__all__ = [
    "DIRECTION",
    "METRICS",
    "PRESETS",
    "Convention",
    "Measured",
    "arrow",
    "measure",
    "pairwise_metrics",
    "resolve",
]
