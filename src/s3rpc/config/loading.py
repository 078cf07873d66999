"""Loading: a ``.rr.yaml`` file or parsed mapping, ``${VAR}`` expanded, into validated models.

Only the ``rpc``, ``s3``, ``logs``, ``metrics`` and ``status`` sections are read; RoadRunner's
other top-level sections (``version``, ``http``, ``server``, … in ``sections.py``) are ignored and
any other top-level key is an error with its near miss suggested. ``$VAR``,
``${VAR}`` and ``${VAR:-default}`` are expanded in every string before validation. Errors name
the dotted key (``s3.buckets.uploads.visibility``) and never echo a value, so no secret reaches
a message; a value an empty or unset variable produced names that variable. After
validation, what production must not run with is refused too: a server without credentials
that does not say ``credentials.ambient: true``, and an ``endpoint`` that an unset ``${VAR}``
(no default) emptied.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from s3rpc.config.models import (
    BucketConfig,
    Config,
    ConfigError,
    Credentials,
    S3Config,
    _KeyedError,
    error_message,
)
from s3rpc.config.sections import OWN_SECTIONS, unknown_section_errors

DEFAULT_CONFIG_PATH = ".rr.yaml"

_VAR = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def expand_env(text: str, environ: Mapping[str, str] | None = None) -> str:
    """Expand ``$VAR``, ``${VAR}`` and ``${VAR:-default}`` (the default also replaces "")."""
    return _expand(text, os.environ if environ is None else environ, [])


def _expand(
    text: str, env: Mapping[str, str], empty: list[str], bare: list[str] | None = None
) -> str:
    """``expand_env``, appending to ``empty`` each ``${VAR}`` that gave "" (for error messages)
    and to ``bare`` those of them written without a ``:-default`` (an unintended empty)."""

    def sub(match: re.Match[str]) -> str:
        name = match["braced"] or match["bare"]
        value = env.get(name, "")
        if match["default"] is not None and value == "":
            value = match["default"]
        if value == "":
            shown = f"${{{name}}}" if match["braced"] else f"${name}"
            empty.append(shown)
            if bare is not None and match["default"] is None:
                bare.append(shown)
        return value

    return _VAR.sub(sub, text)


@dataclass
class _Expansion:
    """What expanding the document found: per dotted key, the variables that came out empty
    (``empty``) and, for keys whose whole value is "", those written without a default
    (``unset``: an empty that the file did not ask for)."""

    empty: dict[str, list[str]] = field(default_factory=dict)
    unset: dict[str, list[str]] = field(default_factory=dict)


def _expand_tree(node: Any, env: Mapping[str, str], path: str, found: _Expansion) -> Any:
    if isinstance(node, str):
        names: list[str] = []
        bare: list[str] = []
        text = _expand(node, env, names, bare)
        if names:
            found.empty[path] = names
        if bare and text == "":
            found.unset[path] = bare
        return text
    if isinstance(node, dict):
        return {
            key: _expand_tree(value, env, f"{path}.{key}" if path else str(key), found)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_expand_tree(value, env, f"{path}.{i}", found) for i, value in enumerate(node)]
    return node


def _describe(
    error: ValidationError, root: str, empty: Mapping[str, list[str]] | None = None
) -> str:
    """One ``dotted.key: message`` per error; a value that an empty ``${VAR}`` produced says so
    (the variable's name, never a value)."""
    lines = []
    for item in error.errors(include_input=False, include_url=False):
        loc = [str(part) for part in item["loc"] if not str(part).startswith("function-")]
        ctx = item.get("ctx") or {}
        inner = ctx.get("error")
        if isinstance(inner, _KeyedError):
            loc.append(inner.key)
            message = inner.message
        else:
            message = error_message(item)
        key = ".".join([root, *loc]) if root else ".".join(loc)
        if empty and key in empty and item["type"] != "missing":
            names = ", ".join(dict.fromkeys(empty[key]))
            which = "which is" if "," not in names else "which are"
            message = f"{message} (from {names}, {which} empty or unset)"
        lines.append(f"{key}: {message}" if key else message)
    return "; ".join(lines)


def config_from_mapping(
    data: Mapping[str, Any], environ: Mapping[str, str] | None = None, *, servers: bool = True
) -> Config:
    """Validate an already-parsed document (the whole ``.rr.yaml``, or a test's dict).

    ``servers=False`` (``s3rpc dev``, which points every server at its embedded S3) skips
    what only real servers need: credentials, and endpoints that variables left empty."""
    if not isinstance(data, Mapping):
        raise ConfigError("the configuration must be a YAML mapping")
    unknown = unknown_section_errors(data)
    if unknown:
        raise ConfigError("; ".join(unknown))
    found = _Expansion()
    expanded = _expand_tree(
        {k: data[k] for k in OWN_SECTIONS if k in data},
        os.environ if environ is None else environ,
        "",
        found,
    )
    for section in OWN_SECTIONS:
        if section in expanded and expanded[section] is None:
            expanded[section] = {}
    emptied = _emptied_endpoints(found) if servers else []
    try:
        config = Config.model_validate(expanded)
    except ValidationError as exc:
        raise ConfigError("; ".join([*emptied, _describe(exc, "", found.empty)])) from None
    problems = emptied + (_missing_credentials(config.s3, found) if servers else [])
    if problems:
        raise ConfigError("; ".join(problems))
    return config


_AMBIENT_HINT = (
    "give it, or set credentials.ambient: true to sign with the AWS default chain "
    "(AWS_* variables, profile, instance or task role)"
)


_ENDPOINT_KEY = re.compile(r"s3\.(?:servers|buckets)\.[^.]+\.endpoint")


def _emptied_endpoints(found: _Expansion) -> list[str]:
    """An ``endpoint`` that an unset ``${VAR}`` (written without a default) made empty: it
    would silently mean AWS S3."""
    problems = []
    for key, names in found.unset.items():
        if _ENDPOINT_KEY.fullmatch(key):
            origin = ", ".join(dict.fromkeys(names))
            problems.append(
                f"{key}: is empty (from {origin}, which is empty or unset), which would mean "
                'AWS S3; set the variable, or for AWS write endpoint: "" (or ${VAR:-})'
            )
    return problems


def _missing_credentials(s3: S3Config, found: _Expansion) -> list[str]:
    """A server (or inline bucket) without key and secret that does not say
    ``credentials.ambient: true``, or with only one of them: validation lets it through,
    production must not. Each empty value names the ``${VAR}`` it came from."""
    problems = []
    signing: list[tuple[str, Credentials | None]] = [
        (f"s3.servers.{name}", server.credentials) for name, server in s3.servers.items()
    ]
    signing += [
        (f"s3.buckets.{name}", bucket.credentials)
        for name, bucket in s3.buckets.items()
        if bucket.server is None
    ]
    for where, given in signing:
        creds = given or Credentials()
        values = {"key": creds.key, "secret": creds.secret.get_secret_value()}
        missing = [name for name, value in values.items() if value == ""]
        both = len(missing) == len(values)
        if not missing or (creds.ambient and both):
            continue
        origins = {name: found.empty.get(f"{where}.credentials.{name}") for name in missing}
        # With only one of them given, the chain would not help: ask for the other.
        hint = _AMBIENT_HINT if both and not creds.ambient else "give both key and secret"
        if both and not any(origins.values()):
            problems.append(
                f"{where}.credentials: key and secret are missing; "
                + hint.replace("give it", "give them")
            )
            continue
        for name in missing:
            names = origins[name]
            why = (
                f"is empty (from {', '.join(dict.fromkeys(names))}, which is empty or unset)"
                if names
                else "is missing"
            )
            problems.append(f"{where}.credentials.{name}: {why}; {hint}")
    return problems


def load_config(
    path: str | os.PathLike[str],
    environ: Mapping[str, str] | None = None,
    *,
    servers: bool = True,
) -> Config:
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {file}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{file} is not UTF-8 text (invalid byte at offset {exc.start})"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{file} is not valid YAML{where}") from None
    return config_from_mapping(data or {}, environ, servers=servers)


def bucket_from_params(s3: S3Config, name: str, fields: Mapping[str, Any]) -> BucketConfig:
    """Validate a bucket registered at run time (``s3.RegisterBucket``) like one from the file
    (its credentials are judged by ``s3.register``, not by the file's rules)."""
    try:
        bucket = BucketConfig.model_validate(dict(fields))
    except ValidationError as exc:
        raise ConfigError(_describe(exc, "")) from None
    if bucket.server is not None and bucket.server not in s3.servers:
        raise ConfigError(f"server: server '{bucket.server}' is not defined in s3.servers")
    return bucket
