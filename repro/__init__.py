"""repro: version data, models and metrics with git; run every stage in a pinned image."""

__version__ = "0.1.0"
