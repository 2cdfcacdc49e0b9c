"""JSON read from a file, in one way for every reader: whatever is wrong with it is one line, never a traceback.

``json.loads`` fails in more ways than ``JSONDecodeError``: a document nested thousands of levels deep
(``RecursionError``), an integer of more than 4,300 digits (``ValueError``), bytes that are not UTF-8.
"""

from __future__ import annotations

import json

from ..core.errors import DataError


def parse_json(text: str | bytes, source: str, error=DataError):
    """The document in ``text``; ``error`` (a BptrainError type) with one line naming ``source`` otherwise."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{source} is not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except RecursionError:
        raise error(f"{source} is not valid JSON that bptrain reads: it is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise error(f"{source} is not valid JSON that bptrain reads ({reason})") from None


def is_json_object(text: str | bytes) -> dict | None:
    """The document in ``text`` if it is a JSON object bptrain can read, else None (for telling files apart)."""
    try:
        document = parse_json(text, "the file")
    except DataError:
        return None
    return document if isinstance(document, dict) else None
