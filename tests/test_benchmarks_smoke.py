"""The benchmark suite stays runnable: its quick mode completes, prints every figure beside its
goal and writes the same figures as JSON. (Speed itself is never asserted: whether a goal is met
does not change the exit status.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FIGURES = (
    "s3.Read 1 KiB",
    "s3.Exists",
    "s3.Write 1 KiB",
    "s3.GetPublicURL presigned",
    "s3.ListBuckets",
    "s3.Write (msgpack)",
    "s3.Read (json)",
)
#: The figures that get a row beside the Go anchor when go and aws-sdk-go-v2 are installed.
GO_FIGURES = ("s3.Read 1 KiB", "s3.Exists", "s3.Write 1 KiB", "s3.GetPublicURL presigned")


def test_quick_benchmark_run_prints_every_figure_with_its_goal_and_writes_json(
    tmp_path: Path,
) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = json.loads(out.read_text())["lines"]
    for name in FIGURES:
        words = name.split()
        found = [ln for ln in lines if all(word in ln["figure"] for word in words)]
        assert found, f"no figure {name!r} in {[ln['figure'] for ln in lines]}"
        for line in found:
            assert line["goal"]
            assert line["figure"] in result.stdout
    verdicts = [ln["met"] for ln in lines if ln["met"] is not None]
    assert len(verdicts) >= 10
    assert "peak RSS growth" in result.stdout
    anchor = json.loads(out.read_text())["go_anchor"]
    if anchor.startswith("skipped"):
        assert f"Go anchor: {anchor.splitlines()[0]}" in result.stdout
    else:
        for name in GO_FIGURES:
            found = [ln for ln in lines if ln["figure"].startswith(f"{name}, CPU/op vs Go SDK")]
            assert found, f"no Go SDK row for {name!r} though the anchor ran ({anchor})"
            assert found[0]["value"] > 0
            assert found[0]["figure"] in result.stdout


def test_go_anchor_without_go_says_it_is_skipped_and_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import goanchor
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    monkeypatch.setenv("PATH", "")
    anchor, why = goanchor.go_anchor()
    assert anchor is None
    assert "no `go` on PATH" in why
    assert "apt-get install golang-go golang-github-aws-aws-sdk-go-v2-dev" in why
