"""Durations: a seconds field takes a plain number or a RoadRunner (Go) duration string.

RoadRunner configs write timeouts as Go durations (``30s``, ``1m``, ``1h30m``, ``500ms``,
``1.5s``); s3rpc's own keys are seconds. Every seconds field accepts both: a number (or a
numeric string) is seconds, a string with units is summed unit by unit, as Go's
``time.ParseDuration`` does.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,  # U+00B5 micro sign
    "μs": 1e-6,  # U+03BC Greek mu
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h)")
_WHOLE = re.compile(r"[+-]?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:ns|us|µs|μs|ms|s|m|h))+")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")

DURATION_HELP = "must be a number of seconds or a duration such as 30s, 1m30s or 500ms"


def parse_duration(value: str) -> float:
    """Seconds in ``value``: ``"30"``/``"1.5"`` (seconds) or Go units (``"1h30m"``, ``"500ms"``).

    Raises ``ValueError`` (the message never repeats the value) for anything else.
    """
    text = value.strip()
    if _NUMBER.fullmatch(text):
        return float(text)
    if not _WHOLE.fullmatch(text):
        raise ValueError(DURATION_HELP)
    sign = -1.0 if text.startswith("-") else 1.0
    total = sum(float(number) * _UNITS[unit] for number, unit in _PART.findall(text))
    return sign * total


def to_seconds(value: Any) -> Any:
    """Pydantic before-validator: strings are parsed, other values left to the float check."""
    if isinstance(value, bool):
        raise ValueError(DURATION_HELP)
    if isinstance(value, str):
        return parse_duration(value)
    return value


#: Seconds, written as a number or a duration string.
Seconds = Annotated[float, BeforeValidator(to_seconds)]
PositiveSeconds = Annotated[float, BeforeValidator(to_seconds), Field(gt=0)]
NonNegativeSeconds = Annotated[float, BeforeValidator(to_seconds), Field(ge=0)]
