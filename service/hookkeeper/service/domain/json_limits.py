"""Bounds on JSON a caller sends, checked before anything parses it.

Python's JSON decoder recurses once per nesting level: 100,000 ``[`` would
end in a RecursionError. The depth is therefore measured first by a flat
scan (no recursion, stops at the first level past the limit).
"""

from __future__ import annotations

import re

# Far deeper than any real notification payload, far shallower than the
# interpreter's recursion limit (the encoder recurses too, on every delivery).
MAX_JSON_DEPTH = 64

# A JSON string token (possessive: linear time, no backtracking).
_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def exceeds_depth(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``text`` nests arrays and objects more than ``limit`` deep
    (brackets inside strings do not count)."""
    if text.count("[") + text.count("{") <= limit:
        # No more openers in all (those in strings included) than the limit:
        # nothing to scan (most payloads; the scan was a third of the cost
        # of normalising one).
        return False
    depth = 0
    for match in _BRACKET.finditer(_STRING.sub("", text)):
        if match[0] in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False
