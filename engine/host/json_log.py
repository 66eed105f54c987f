"""Structured logs: every process writes one JSON object per line to stderr, with one field set.

Fields: ``ts`` (UTC, ISO 8601 with microseconds), ``level``, ``process`` (``shard-0``, ``risk-0``,
``gateway-0``, ``supervisor``), ``pid``, ``logger``, ``msg``, and ``exc`` when an exception is
logged. Anything passed as ``extra={...}`` is added under its own key.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="microseconds"),
            "level": record.levelname.lower(),
            "process": self.process,
            "pid": os.getpid(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in out:
                out[key] = value if isinstance(value, (int, float, str, bool, type(None))) else repr(value)
        return json.dumps(out)


def setup_json_logging(process: str, level: int = logging.WARNING) -> None:
    """Route the root logger of this process to stderr as JSON lines (replaces other handlers)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(process))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
