"""A JSON file a user hands a tool (`hx oracle|mark|funding explain`, `hx risk what-if`, `hx stress`
scenario files): read it, or say in one line why not, never a traceback.

Why a module: ``json.loads`` recurses in C once per nested array or object, so a file of 100,000
``[`` is a ``RecursionError`` - or a segmentation fault when the interpreter's recursion limit has
been raised (a test runner, a library) past what the C stack holds. The depth is therefore
measured before parsing, without recursion; bytes that are not UTF-8, a directory, a file that
cannot be read are one-line errors too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

# No input of these tools needs more than a few levels (a scenario: object -> list of rows ->
# object of prices); 64 is far past any of them and far below what the decoder survives.
MAX_NESTING = 64

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')  # a JSON string, escapes included (brackets inside are text)
_OPEN = (ord("["), ord("{"))
_CLOSE = (ord("]"), ord("}"))


class JsonFileError(ValueError):
    """The file cannot be read as a JSON document; the message names the file and why."""


def nesting_depth(text: str) -> int:
    """How deep arrays and objects nest in ``text`` (0 for a scalar), brackets inside strings not
    counted; linear and without recursion. A malformed text gets a number too (the parser then
    refuses it)."""
    codes = np.frombuffer(_STRING.sub('""', text).encode("utf-8"), np.uint8)
    step = np.isin(codes, _OPEN).astype(np.int64) - np.isin(codes, _CLOSE)
    return int(np.cumsum(step).max(initial=0))


def load_json_file(path: Path, **loads_kw: Any) -> Any:
    """The document in ``path`` (``loads_kw`` go to ``json.loads``: ``parse_float``,
    ``object_pairs_hook``; what a hook raises is the caller's). Raises JsonFileError."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise JsonFileError(f"{path}: no such file") from None
    except OSError as exc:  # a directory, a file it may not read
        raise JsonFileError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonFileError(f"{path}: not valid JSON: not UTF-8 text (byte {exc.start})") from None
    depth = nesting_depth(text)
    if depth > MAX_NESTING:
        raise JsonFileError(
            f"{path}: not valid input: JSON nested too deeply ({depth} levels, at most {MAX_NESTING})"
        )
    try:
        return json.loads(text, **loads_kw)
    except ValueError as exc:  # JSONDecodeError, and an integer of more than 4,300 digits
        raise JsonFileError(f"{path}: not valid JSON: {exc}") from None
    except RecursionError:  # (not reachable past the depth check; kept so it never is a traceback)
        raise JsonFileError(f"{path}: not valid input: JSON nested too deeply") from None
