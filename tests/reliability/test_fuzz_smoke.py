"""The standalone fuzzer (``python -m tests.fuzz``), bounded to a few thousand frames per run.

The daemon is a real subprocess on 127.0.0.1 in front of the session's moto server; the fuzzer
checks every answer itself (see tests/fuzz.py). The seeds are fixed so a failure reproduces with
``python -m tests.fuzz --frames 3000 --seed <seed> --connections 3``.
"""

from __future__ import annotations

import pytest

import fuzz

SMOKE_FRAMES = 3000


@pytest.mark.timeout(90)
@pytest.mark.parametrize("seed", [7, 20260])
def test_fuzzed_frames_all_get_wellformed_answers_and_the_daemon_survives(
    s3_endpoint: str, seed: int
) -> None:
    lines: list[str] = []
    summary = fuzz.fuzz(
        SMOKE_FRAMES, seed, connections=3, endpoint=s3_endpoint, echo=lines.append
    )
    assert summary.failures == [], summary.report()
    assert summary.frames == SMOKE_FRAMES
    # every frame class was exercised and each got the treatment it must get
    assert summary.requests > SMOKE_FRAMES // 2
    assert summary.answered == summary.requests
    assert summary.violations > 0
    assert summary.closed_on_violation == summary.violations
    assert summary.incomplete > 0
    assert {"INVALID_REQUEST", "INVALID_PATHNAME", "UNKNOWN_METHOD", "ok"} <= set(summary.codes)
    assert "INTERNAL_ERROR" not in summary.codes


def test_fuzzer_classifies_frames_by_the_goridge_layout() -> None:
    good = fuzz.build_frame(fuzz.JSON, 9, b"s3.Read", b"{}")
    assert fuzz.classify(good) == fuzz.Sent("request", 9, b"s3.Read", fuzz.JSON)
    assert fuzz.classify(fuzz.build_frame(fuzz.JSON, 9, b"m", b"", crc=0)).kind == "violation"
    assert fuzz.classify(fuzz.build_frame(fuzz.JSON, 9, b"m", b"", version=2)).kind == "violation"
    assert fuzz.classify(fuzz.build_frame(fuzz.JSON, 9, b"m", b"", words=6)).kind == "violation"
    # Over the limit with a sound header: answered FRAME_TOO_LARGE once the method is in.
    oversized = fuzz.build_frame(fuzz.JSON, 9, b"m", b"", length=fuzz.MAX_FRAME + 1)
    assert fuzz.classify(oversized) == fuzz.Sent("oversized", 9, b"m", fuzz.JSON)
    assert fuzz.classify(oversized[:20]).kind == "incomplete"
    overlong_method = fuzz.build_frame(
        fuzz.JSON, 9, b"m", b"", length=fuzz.MAX_FRAME + 1, method_len=fuzz.MAX_OVERSIZED_METHOD + 1
    )
    assert fuzz.classify(overlong_method).kind == "violation"
    assert fuzz.classify(fuzz.build_frame(fuzz.JSON, 9, b"m", b"", method_len=2)).kind == (
        "violation"
    )
    assert fuzz.classify(good[:-1]).kind == "incomplete"
    assert fuzz.classify(good[:11]).kind == "incomplete"
