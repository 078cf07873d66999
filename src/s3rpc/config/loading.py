"""Loading: a ``.rr.yaml`` file or parsed mapping, ``${VAR}`` expanded, into validated models.

Only the ``rpc``, ``s3``, ``logs``, ``metrics`` and ``status`` sections are read; other top-level
sections of a RoadRunner config (``version``, ``http``, ``server``, …) are ignored. ``$VAR``,
``${VAR}`` and ``${VAR:-default}`` are expanded in every string before validation. Errors name
the dotted key (``s3.buckets.uploads.visibility``) and never echo a value, so no secret reaches
a message; a value an empty or unset variable produced names that variable.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from s3rpc.config.models import BucketConfig, Config, ConfigError, S3Config, _KeyedError

DEFAULT_CONFIG_PATH = ".rr.yaml"

_VAR = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def expand_env(text: str, environ: Mapping[str, str] | None = None) -> str:
    """Expand ``$VAR``, ``${VAR}`` and ``${VAR:-default}`` (the default also replaces "")."""
    return _expand(text, os.environ if environ is None else environ, [])


def _expand(text: str, env: Mapping[str, str], empty: list[str]) -> str:
    """``expand_env``, appending to ``empty`` each ``${VAR}`` that gave "" (for error messages)."""

    def sub(match: re.Match[str]) -> str:
        name = match["braced"] or match["bare"]
        value = env.get(name, "")
        if match["default"] is not None and value == "":
            value = match["default"]
        if value == "":
            empty.append(f"${{{name}}}" if match["braced"] else f"${name}")
        return value

    return _VAR.sub(sub, text)


def _expand_tree(node: Any, env: Mapping[str, str], path: str, empty: dict[str, list[str]]) -> Any:
    if isinstance(node, str):
        names: list[str] = []
        text = _expand(node, env, names)
        if names:
            empty[path] = names
        return text
    if isinstance(node, dict):
        return {
            key: _expand_tree(value, env, f"{path}.{key}" if path else str(key), empty)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_expand_tree(value, env, f"{path}.{i}", empty) for i, value in enumerate(node)]
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
            message = item["msg"].removeprefix("Value error, ")
            if item["type"] == "extra_forbidden":
                message = "unknown key"
            elif item["type"] == "missing":
                message = "required key is missing"
        key = ".".join([root, *loc]) if root else ".".join(loc)
        if empty and key in empty and item["type"] != "missing":
            names = ", ".join(dict.fromkeys(empty[key]))
            which = "which is" if "," not in names else "which are"
            message = f"{message} (from {names}, {which} empty or unset)"
        lines.append(f"{key}: {message}" if key else message)
    return "; ".join(lines)


def config_from_mapping(
    data: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> Config:
    """Validate an already-parsed document (the whole ``.rr.yaml``, or a test's dict)."""
    if not isinstance(data, Mapping):
        raise ConfigError("the configuration must be a YAML mapping")
    empty: dict[str, list[str]] = {}
    expanded = _expand_tree(
        {k: data[k] for k in ("rpc", "s3", "logs", "metrics", "status") if k in data},
        os.environ if environ is None else environ,
        "",
        empty,
    )
    for section in ("rpc", "s3", "logs", "metrics", "status"):
        if section in expanded and expanded[section] is None:
            expanded[section] = {}
    try:
        return Config.model_validate(expanded)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, "", empty)) from None


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
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
    return config_from_mapping(data or {}, environ)


def bucket_from_params(s3: S3Config, name: str, fields: Mapping[str, Any]) -> BucketConfig:
    """Validate a bucket registered at run time (``s3.RegisterBucket``) like one from the file."""
    try:
        bucket = BucketConfig.model_validate(dict(fields))
    except ValidationError as exc:
        raise ConfigError(_describe(exc, "")) from None
    if bucket.server is not None and bucket.server not in s3.servers:
        raise ConfigError(f"server: server '{bucket.server}' is not defined in s3.servers")
    return bucket
