"""Checks every entry point shares for untrusted text: NUL bytes, lone surrogates, JSON depth, ASCII integers.

PostgreSQL refuses NUL characters in text, and a lone surrogate (`"\\ud800"` in JSON) cannot be encoded as UTF-8 for
any database or log; JSON nested thousands deep makes every recursive walk (`json.dumps`, templates) raise
RecursionError; `str.isdigit()` accepts `²` and `٣`, which `int()` then refuses or reads. Validate once at the edge.
"""

from __future__ import annotations

import json
import re
from typing import Any

from newsdesk.errors import InvalidInput

MAX_JSON_DEPTH = 64
_BAD = re.compile("[\x00\ud800-\udfff]")
_ASCII_INT = re.compile(r"^[+-]?[0-9]{1,18}$")


def bad_char(text: str) -> str | None:
    """'NUL byte' or 'lone surrogate' when `text` holds one, else None."""
    found = _BAD.search(text)
    if found is None:
        return None
    return "NUL byte" if found.group() == "\x00" else "lone surrogate"


def check_text(value: str, field: str, max_chars: int | None = None) -> str:
    """`value` unchanged when it is storable text of at most `max_chars` characters.

    Raises:
        InvalidInput: a NUL byte, a lone surrogate or too long (naming `field`).
    """
    problem = bad_char(value)
    if problem:
        raise InvalidInput(f"{field!r} contains a {problem}", {"field": field})
    if max_chars is not None and len(value) > max_chars:
        raise InvalidInput(f"{field!r} is {len(value)} characters, over the {max_chars} limit", {"field": field})
    return value


def scrub(text: str) -> str:
    """`text` with NUL bytes dropped and lone surrogates replaced (for dead letters and logs, never for data)."""
    return text.replace("\x00", "").encode("utf-8", errors="replace").decode("utf-8")


def check_json(value: Any, field: str = "body", max_depth: int = MAX_JSON_DEPTH) -> Any:
    """`value` (parsed JSON) unchanged when it is at most `max_depth` deep and its strings and keys are storable.

    Walks iteratively, so a value too deep for recursion is reported, not crashed on.

    Raises:
        InvalidInput: too deep, or a string with a NUL byte or a lone surrogate.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            problem = bad_char(node)
            if problem:
                raise InvalidInput(f"{field} contains a {problem}", {"field": field})
        elif isinstance(node, (dict, list)):
            if depth > max_depth:
                raise InvalidInput(f"{field} is nested more than {max_depth} levels deep", {"field": field})
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for key, child in items:
                if isinstance(key, str):
                    stack.append((key, depth))
                stack.append((child, depth + 1))
    return value


def loads(text: str | bytes, field: str = "body", max_depth: int = MAX_JSON_DEPTH, strings: bool = True) -> Any:
    """JSON text -> value, refusing malformed, too deep and (with `strings`) NUL/surrogate-bearing input.

    Raises:
        InvalidInput: the reason, naming `field`.
    """
    try:
        value = json.loads(text)
    except RecursionError:
        raise InvalidInput(f"{field} is nested more than {max_depth} levels deep", {"field": field}) from None
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{field} is not valid UTF-8 (byte {exc.start})", {"field": field}) from None
    except ValueError as exc:
        raise InvalidInput(f"{field} is not valid JSON: {exc}", {"field": field}) from None
    if strings:
        return check_json(value, field, max_depth)
    return check_json_depth(value, field, max_depth)


def check_json_depth(value: Any, field: str = "body", max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Like `check_json` for the depth only (strings are checked later, per item)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            if depth > max_depth:
                raise InvalidInput(f"{field} is nested more than {max_depth} levels deep", {"field": field})
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return value


def strict_int(raw: Any, field: str, low: int | None = None, high: int | None = None) -> int:
    """An integer from ASCII digits only (`int()` alone accepts `'٣'`, `isdigit()` accepts `'²'`).

    Raises:
        InvalidInput: not an ASCII integer, or outside [low, high].
    """
    if isinstance(raw, bool):
        raise InvalidInput(f"{field} must be an integer", {"field": field})
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, str) and _ASCII_INT.match(raw.strip()):
        value = int(raw.strip())
    else:
        raise InvalidInput(f"{field} must be an integer", {"field": field})
    if (low is not None and value < low) or (high is not None and value > high):
        raise InvalidInput(f"{field} must be between {low} and {high}", {"field": field})
    return value


def is_ascii_int(raw: Any) -> bool:
    """True for text made of ASCII digits (an optional sign) that `strict_int` accepts."""
    return isinstance(raw, str) and bool(_ASCII_INT.match(raw.strip()))
