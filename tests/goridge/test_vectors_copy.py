"""The project's copy of the golden vectors is the one from ``../shared``, unchanged."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent / "vectors"
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "goridge-vectors"
FILES = ["vectors.json", "FORMAT.md"]
# FORMAT.md is the shared directory's README.md.
SHARED_NAMES = {"vectors.json": "vectors.json", "FORMAT.md": "README.md"}


def recorded_checksums() -> dict[str, str]:
    text = (HERE / "README.md").read_text(encoding="utf-8")
    return dict(re.findall(r"^\| (\S+) \| `([0-9a-f]{64})` \|$", text, re.MULTILINE))


@pytest.mark.parametrize("name", FILES)
def test_copy_matches_the_checksum_in_its_readme(name: str) -> None:
    digest = hashlib.sha256((HERE / name).read_bytes()).hexdigest()
    assert recorded_checksums()[name] == digest


@pytest.mark.parametrize("name", FILES)
def test_copy_equals_the_shared_vectors_when_they_are_beside_the_repository(name: str) -> None:
    shared = SHARED / SHARED_NAMES[name]
    if not shared.is_file():
        pytest.skip(f"{shared} is not here to compare with")
    assert (HERE / name).read_bytes() == shared.read_bytes()
