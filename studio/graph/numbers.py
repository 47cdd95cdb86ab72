"""What counts as a number in a workflow file.

JSON gives Python ``bool`` for true/false, and ``bool`` is a subclass of ``int``; a file may
also carry NaN or infinity (``1e999`` reads as infinity). Positions, sizes and FLOAT values
must be none of those, and every reader asks the same question here.
"""

from __future__ import annotations

import math
from typing import Any


def is_finite_number(value: Any, bound: float | None = None) -> bool:
    """Whether ``value`` is an int or float (not a bool), neither NaN nor infinite, and, when
    ``bound`` is given, no further than ``bound`` from zero."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return bound is None or abs(value) <= bound


def is_finite_pair(value: Any, bound: float | None = None) -> bool:
    """Whether ``value`` is a list or tuple of exactly two finite numbers (a position, a size),
    each within ``bound`` of zero when given."""
    return (isinstance(value, (list, tuple)) and len(value) == 2
            and all(is_finite_number(item, bound) for item in value))
