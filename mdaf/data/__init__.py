"""Taobao UserBehavior data: streaming reader, the MDAF paper's pipeline, cache, batches, synthetic data.

``read_behaviors`` -> ``prepare`` (pipeline steps, statistics, cache) -> ``BatchIterator``;
``generate_synthetic`` writes a Taobao-like file in the official format and ``default_dataset``
the small embedded default.
"""

from mdaf.data.pipeline import NEGATIVE_SCHEMES, PipelineConfig
from mdaf.data.prepare import PreparedData, format_stats, prepare
from mdaf.data.reader import BEHAVIORS, OFFICIAL_WINDOW, MalformedLineError, ReadReport, read_behaviors
from mdaf.data.synthetic import default_dataset, generate_synthetic

__all__ = [
    "BEHAVIORS",
    "NEGATIVE_SCHEMES",
    "OFFICIAL_WINDOW",
    "BatchIterator",
    "MalformedLineError",
    "PipelineConfig",
    "PreparedData",
    "ReadReport",
    "default_dataset",
    "format_stats",
    "generate_synthetic",
    "prepare",
    "read_behaviors",
]


def __getattr__(name: str):
    # the batch iterator needs torch: import it on first use so the data tools start fast
    if name == "BatchIterator":
        from mdaf.data.batches import BatchIterator

        return BatchIterator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
