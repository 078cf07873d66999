"""Top-level sections of ``.rr.yaml``: RoadRunner's (accepted, mostly not read) and s3rpc's.

A top-level key outside this list is an error, so a misspelt section (``S3:``, ``rcp:``) is
reported with its near miss instead of being silently ignored.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

#: Every top-level key RoadRunner 2023.x/2024.x defines. Source: roadrunner-server/roadrunner
#: ``schemas/config/3.0.schema.json`` — the union of its ``properties`` over the file's history
#: (2023-03-21 to 2026-08-22, up to commit 1fba35160274e27705cfaf25e9621ddbbe7bfdc9) — plus
#: ``endure`` and ``include``, which RoadRunner's own ``.rr.yaml`` and
#: ``internal/rpc/test/include1/.rr.yaml`` use but the schema leaves out.
ROADRUNNER_SECTIONS: frozenset[str] = frozenset(
    {
        "amqp",
        "beanstalk",
        "boltdb",
        "centrifuge",
        "endure",
        "fileserver",
        "grpc",
        "http",
        "include",
        "jobs",
        "kafka",
        "kv",
        "logs",
        "memcached",
        "metrics",
        "nats",
        "otel",
        "redis",
        "reload",
        "rpc",
        "server",
        "service",
        "sqs",
        "status",
        "tcp",
        "temporal",
        "version",
    }
)

#: The sections s3rpc reads (``rpc``, ``logs``, ``metrics`` and ``status`` are RoadRunner's too).
OWN_SECTIONS: tuple[str, ...] = ("rpc", "s3", "logs", "metrics", "status")

KNOWN_SECTIONS: frozenset[str] = ROADRUNNER_SECTIONS | frozenset(OWN_SECTIONS)


def unknown_section_errors(keys: Iterable[object]) -> list[str]:
    """One message per top-level key that is neither RoadRunner's nor ours, with a suggestion."""
    messages = []
    for key in keys:
        if isinstance(key, str) and key in KNOWN_SECTIONS:
            continue
        text = str(key)
        message = f"{text}: unknown top-level section (not one of RoadRunner's or s3rpc's)"
        near = suggest(text, KNOWN_SECTIONS)
        if near is not None:
            message += f"; did you mean '{near}'?"
        messages.append(message)
    return messages


def suggest(word: str, choices: frozenset[str] | tuple[str, ...]) -> str | None:
    """The closest of ``choices`` to ``word``, or None: a different case, then a transposition
    (``rcp``: ``rpc``), then difflib's best, s3rpc's own sections winning a tie."""
    lowered = word.lower()
    by_case = {choice.lower(): choice for choice in choices}
    if lowered in by_case:
        return by_case[lowered]
    ordered = [name for name in OWN_SECTIONS if name in choices] + sorted(
        set(choices) - set(OWN_SECTIONS)
    )
    for choice in ordered:
        if sorted(choice) == sorted(lowered):
            return choice
    best, best_ratio = None, 0.6
    for choice in ordered:
        ratio = difflib.SequenceMatcher(None, lowered, choice).ratio()
        if ratio > best_ratio:
            best, best_ratio = choice, ratio
    return best
