"""Process-wide logging: one JSON object per line (the default, for collectors) or plain text.

Configured once at start from LOG_FORMAT and LOG_LEVEL. The request hot path never logs; it counts.
Every finished line is scrubbed of the settings' secrets (process/secrets.py), whatever produced it.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Sequence
from typing import Any

from kedahttp.process import secrets as secrets_mod

_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, secrets: Sequence[str] = ()) -> None:
        super().__init__()
        self.secrets = tuple(secrets)

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return secrets_mod.scrub(json.dumps(out, default=str), self.secrets)


class TextFormatter(logging.Formatter):
    def __init__(self, secrets: Sequence[str] = ()) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        self.secrets = tuple(secrets)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = {k: v for k, v in record.__dict__.items() if k not in _RESERVED and not k.startswith("_")}
        if extra:
            line += " " + " ".join(f"{k}={v}" for k, v in extra.items())
        return secrets_mod.scrub(line, self.secrets)


FORMATTERS = {"json": JsonFormatter, "text": TextFormatter}


def configure(log_format: str = "json", log_level: str = "info", secrets: Sequence[str] = ()) -> None:
    """One handler on stderr; ``secrets`` (Settings.secret_values()) are masked in every line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(FORMATTERS[log_format](secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(log_level.upper())
    # Client libraries are chatty at info; their problems reach us as exceptions we log ourselves.
    for noisy in ("kubernetes", "urllib3", "nats", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
