"""Per-class statistics: a batch of embeddings becomes mergeable sufficient statistics."""

from lingcollapse.stats.classes import ClassAccumulator, ClassStats, chan_merge, class_stats

__all__ = ["ClassAccumulator", "ClassStats", "chan_merge", "class_stats"]
