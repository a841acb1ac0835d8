"""A model that never answers, for the hung-model case of ``benchmarks/serving.py``.

It lives in an importable module on purpose: cloudpickle stores functions of
importable modules by reference (module and name), so the server and worker
processes import this file (``benchmarks/`` is on their ``sys.path``) instead
of unpickling a copy of the function.

>>> CLASSES
[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
"""

from __future__ import annotations

import threading
from typing import Any

#: The digits classes the hung model claims to predict.
CLASSES = list(range(10))


def hang(X: Any) -> Any:
    """Never return: the scoring thread waits on an event nobody sets."""
    threading.Event().wait()
    raise AssertionError("unreachable")  # pragma: no cover
