"""The cyclic garbage collector's policy for long runs that build a large, long-lived object graph.

A simulated fleet (or an emulated one) is built once and lives for the whole run; the per-event
garbage is freed by reference counting. Left at its defaults, CPython's collector would still walk
the whole fleet on every full collection: about 15 % of fleet-rollout-10k's wall time, with pauses
up to 0.75 s (measured with ``gc.callbacks``; issue 17 saw 36 % at 100,000 nodes). So, for the run:

* :func:`freeze` moves everything alive now into the permanent generation, which collections skip;
* the thresholds are raised so that young collections are rarer (cycles are still collected).

:func:`long_lived` applies both and restores the collector's settings when the run ends.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator

RUN_THRESHOLDS = (50_000, 20, 100)
"""Young-generation allocations between collections, then the two older generations' ratios."""


def freeze() -> None:
    """Collect once, then keep every object alive now out of future collections."""
    gc.collect()
    gc.freeze()


@contextmanager
def long_lived() -> Iterator[None]:
    """Freeze what exists and collect rarely while the block runs; restore the settings after."""
    before = gc.get_threshold()
    freeze()
    gc.set_threshold(*RUN_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
