"""Text from a build made safe for a terminal: what `mixer inspect` prints of documents.

A document may hold anything, and a build made elsewhere anything at all: an ESC sequence
printed raw can retitle the terminal, clear it, or hide the lines around it. So control
characters (C0 but newline and tab, DEL, C1) and the bidirectional overrides that reorder a
line on screen are shown as Python escapes (``\\x1b``, ``\\u202e``); other text is unchanged.
"""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` with every character a terminal would act on written as its escape."""
    return _UNSAFE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
