"""Neural collapse in (large) language models.

The Python API, imported on first use so that ``import lingcollapse`` and the command
line start fast:

- :func:`collect_embeddings` — statistics from a model in memory and your batches;
- :func:`load_stats` — statistics that ``lingcollapse collect`` wrote;
- :func:`measure` — every NC metric of them, as a :class:`Measurement`;
- :class:`ClassStats`, :class:`ValidationStats`, :class:`Collected` — the statistics;
- :class:`UserError` — what every bad input raises, with what to do about it.
"""

__version__ = "0.1.0"

# public name → the module that defines it
_EXPORTS = {
    "collect_embeddings": "lingcollapse.api",
    "load_stats": "lingcollapse.api",
    "measure": "lingcollapse.api",
    "Collected": "lingcollapse.api",
    "Measurement": "lingcollapse.metrics.result",
    "ClassStats": "lingcollapse.stats.classes",
    "ValidationStats": "lingcollapse.stats.validation",
    "UserError": "lingcollapse.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lingcollapse' has no attribute {name!r}")
    from importlib import import_module  # here: importing it costs the CLI's start

    value = getattr(import_module(_EXPORTS[name]), name)
    globals()[name] = value  # once: later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
