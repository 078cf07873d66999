"""``s3rpc check-config --connect``: one line per bucket, saying why it cannot be used."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import SECRET_KEY, daemon_config, free_port, unique_bucket
from s3rpc.cli import main


def write_config(tmp_path: Path, data: dict[str, Any]) -> str:
    path = tmp_path / ".rr.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return str(path)


def test_connect_reports_each_bucket_and_fails_unless_all_are_reachable(
    tmp_path: Path, moto_endpoint: str, s3_admin: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    present, enforced = unique_bucket("present"), unique_bucket("enforced")
    for name in (present, enforced):
        s3_admin.create_bucket(Bucket=name)
    s3_admin.put_bucket_ownership_controls(
        Bucket=enforced,
        OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
    )
    buckets = {
        "present": {"bucket": present},
        "gone": {"bucket": unique_bucket("gone")},
        "enforced": {"bucket": enforced, "visibility_mode": "acl"},
    }
    path = write_config(tmp_path, daemon_config(moto_endpoint, buckets))
    assert main(["check-config", "-c", path, "--connect"]) == 1
    out, err = capsys.readouterr()
    host = moto_endpoint.removeprefix("http://")
    lines = {line.split("'")[1]: line for line in out.splitlines() if line.startswith("bucket ")}
    assert lines["present"] == f"bucket 'present' (s3://{present} at {host}): reachable"
    assert "missing: the S3 bucket" in lines["gone"]
    assert "ACLs disabled" in lines["enforced"]
    assert "visibility_mode: none" in lines["enforced"]
    assert SECRET_KEY not in out + err


def test_connect_exits_0_when_every_bucket_is_reachable(
    tmp_path: Path, moto_endpoint: str, s3_admin: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    name = unique_bucket("ok")
    s3_admin.create_bucket(Bucket=name)
    path = write_config(tmp_path, daemon_config(moto_endpoint, {"files": {"bucket": name}}))
    assert main(["check-config", "-c", path, "--connect"]) == 0
    assert "reachable" in capsys.readouterr().out


def test_connect_reports_an_unreachable_endpoint_within_the_connect_timeout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    config = daemon_config(dead, {"files": {"bucket": "b"}})
    config["s3"]["servers"]["local"].update(connect_timeout=1, max_attempts=5)
    path = write_config(tmp_path, config)
    started = time.monotonic()
    assert main(["check-config", "-c", path, "--connect"]) == 1
    assert time.monotonic() - started < 8  # one attempt, not five
    out = capsys.readouterr().out
    assert "unreachable" in out
    assert "127.0.0.1" in out


def test_connect_with_a_bad_config_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, {"s3": {"buckets": {"x": {"bucket": "b", "nope": 1}}}})
    assert main(["check-config", "-c", path, "--connect"]) == 2
