"""Names and messages from the outside world, made safe to print as one line of output.

A file name may hold a newline (``b.png\nforged.png: 7 (100.0%)``), a terminal's escape sequences, or
bytes that are not UTF-8 (which Python keeps as lone surrogates). Printed as they are, they forge lines
of output that a script reading it would believe. Names that are ordinary printable text are shown as
they are; the others are quoted, like Python's ``repr``, with each such character escaped (a byte that
is not UTF-8 as ``\\xe9``). ``--json`` keeps the real name: JSON escapes what it must.
"""

from __future__ import annotations

import os


def _escaped(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8, as os.fsdecode keeps it
        return f"\\x{code - 0xDC00:02x}"
    if char.isprintable():
        return char
    return repr(char)[1:-1]  # \n, \r, \t, \x1b, \u2028, ...


def shown_name(path: str | os.PathLike) -> str:
    """``path`` as printed on a line of output: as it is when it is printable text, else quoted and escaped."""
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if text.isprintable():
        return text
    return "'" + "".join(_escaped(c) for c in text.replace("\\", "\\\\").replace("'", "\\'")) + "'"


def one_line(message: str) -> str:
    """A message with every character that would break or colour its line escaped (the rest kept)."""
    return message if message.isprintable() else "".join(_escaped(c) for c in message)
