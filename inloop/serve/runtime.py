"""Process settings for a long-running serving process (the server, a model worker).

Python's garbage collector walks every tracked object in its full passes. In a
process that has loaded libraries and models, such a pass stalls whatever
request is in flight for tens of milliseconds. :func:`tune_gc` moves what is
loaded so far out of the collector's reach and makes young-generation passes
rarer. It changes the whole process, so only the process's own entry point
(the server's lifespan, ``inloop serve worker``) calls it, once loading is done.
"""

from __future__ import annotations

import gc

__all__ = ["tune_gc"]


def tune_gc() -> None:
    """Freeze what is loaded now and collect the young generation less often."""
    gc.collect()
    # Loaded libraries and models live as long as the process: keep them out of full passes.
    gc.freeze()
    # Fewer, larger young-generation passes: each request leaves short-lived containers.
    gc.set_threshold(20_000, 50, 1_000)
