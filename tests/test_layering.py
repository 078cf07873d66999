"""Layers import one way: cli -> app -> {server, storage, config, logs} -> {goridge, errors}."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "s3rpc"

# What each part of the package may import from s3rpc (besides itself).
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "budget": set(),
    "contract": set(),
    "goridge": set(),
    "config": set(),
    "logs": set(),
    "metrics": set(),
    "server": {"goridge", "errors", "config", "budget", "contract", "metrics"},
    "storage": {"errors", "config", "budget", "contract", "metrics"},
    "client": {"goridge", "config", "storage"},  # storage.models only: the contract
    "probes": {"server", "storage", "config"},
    "app": {"server", "storage", "config", "errors", "logs", "metrics", "probes"},
    "workers": {"app", "server", "storage", "config", "errors", "logs"},
    "dev": {"app", "config", "logs"},
    "cli": {"app", "config", "errors", "logs", "dev", "client", "workers", "probes"},
    "__main__": {"cli"},
    "__init__": set(),
}
# Inside a package part: which of its modules may import which, so none forms a cycle.
INSIDE: dict[str, dict[str, set[str]]] = {
    "workers": {"__init__": {"supervisor"}, "supervisor": {"link"}, "link": set()},
    "goridge": {
        "__init__": {"codec", "frame", "rpc"},
        "rpc": {"frame"},
        "codec": {"frame", "msgpack_types", "zerocopy"},
        "zerocopy": {"msgpack_types"},
        "msgpack_types": set(),
        "frame": set(),
    },
}
# Modules that must stay free of I/O: the sans-IO protocol and the domain never touch sockets.
NO_IO = {"goridge": {"asyncio", "socket", "selectors"}, "storage": {"socket"}}
# Names of those modules that parse or format and do no I/O, so any layer may import them.
PURE = {"socket": {"inet_aton"}}


def part_of(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if {alias.name for alias in node.names} <= PURE.get(node.module, set()):
                continue
            found.add(node.module)
    return found


MODULES = sorted(SRC.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_module_imports_only_from_lower_layers(path: Path) -> None:
    part = part_of(path)
    assert part in ALLOWED, f"{path.relative_to(SRC)} belongs to no known layer"
    ours = {m.split(".")[1] for m in imported_modules(path) if m.startswith("s3rpc.")}
    ours.discard(part)
    assert ours <= ALLOWED[part], f"{part} imports {sorted(ours - ALLOWED[part])}"


@pytest.mark.parametrize("part", sorted(INSIDE))
def test_modules_inside_a_part_import_one_way(part: str) -> None:
    for path in sorted((SRC / part).glob("*.py")):
        prefix = f"s3rpc.{part}."
        ours = {
            m[len(prefix) :].split(".")[0] for m in imported_modules(path) if m.startswith(prefix)
        }
        allowed = INSIDE[part][path.stem]
        assert ours <= allowed, f"{path.relative_to(SRC)} imports {sorted(ours - allowed)}"


@pytest.mark.parametrize("part", sorted(NO_IO))
def test_protocol_and_domain_layers_do_no_socket_io(part: str) -> None:
    for path in (SRC / part).rglob("*.py"):
        roots = {m.split(".")[0] for m in imported_modules(path)}
        assert not roots & NO_IO[part], f"{path.relative_to(SRC)} imports {roots & NO_IO[part]}"


def test_the_client_reads_the_contract_without_loading_the_s3_stack() -> None:
    import subprocess
    import sys

    code = "import sys, s3rpc.client; print(sorted(m for m in sys.modules if 'boto' in m))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"
