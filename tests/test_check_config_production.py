"""``s3rpc check-config`` refuses the production mistakes it used to answer "configuration OK" to:
credentials or an endpoint from unset variables, misspelt top-level sections, regions AWS does
not have, and it says so in the project's words."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import free_port
from s3rpc.cli import EXIT_CONFIG, EXIT_OK, main

VARIABLES = ("S3_KEY", "S3_SECRET", "S3_ENDPOINT", "S3_REGION")

#: The systemd example's layout: everything from the environment.
PRODUCTION = """
rpc:
  listen: unix:///run/s3rpc/rpc.sock
s3:
  default: uploads
  servers:
    main:
      region: ${S3_REGION:-eu-central-1}
      endpoint: ${S3_ENDPOINT}
      credentials:
        key: ${S3_KEY}
        secret: ${S3_SECRET}
  buckets:
    uploads: {server: main, bucket: app-uploads}
"""


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)


def check(
    tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str], **env: str
) -> tuple[int, str]:
    path = tmp_path / ".rr.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        code = main(["check-config", "-c", str(path)])
    out, err = capsys.readouterr()
    return code, out + err


def test_credentials_from_unset_variables_are_refused_naming_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, output = check(tmp_path, PRODUCTION, capsys, S3_ENDPOINT="https://minio.example:9000")
    assert code == EXIT_CONFIG
    assert "configuration OK" not in output
    assert "s3.servers.main.credentials.key: is empty (from ${S3_KEY}" in output
    assert "s3.servers.main.credentials.secret: is empty (from ${S3_SECRET}" in output
    assert "credentials.ambient: true" in output


def test_one_credential_from_an_unset_variable_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, output = check(
        tmp_path, PRODUCTION, capsys, S3_ENDPOINT="https://minio.example:9000", S3_KEY="AKIA1"
    )
    assert code == EXIT_CONFIG
    assert "s3.servers.main.credentials.secret: is empty (from ${S3_SECRET}" in output
    assert "credentials.key" not in output


def test_no_credentials_at_all_is_refused_unless_ambient_is_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = """
    s3:
      servers:
        main: {region: eu-west-1}
      buckets:
        uploads: {server: main, bucket: b}
        inline: {bucket: c, region: eu-west-1}
    """
    code, output = check(tmp_path, text, capsys)
    assert code == EXIT_CONFIG
    assert "s3.servers.main.credentials: key and secret are missing" in output
    assert "s3.buckets.inline.credentials: key and secret are missing" in output
    ambient = text.replace(
        "{region: eu-west-1}", "{region: eu-west-1, credentials: {ambient: true}}"
    )
    ambient = ambient.replace(
        "region: eu-west-1}", "region: eu-west-1, credentials: {ambient: true}}"
    )
    code, output = check(tmp_path, ambient, capsys)
    assert code == EXIT_OK, output
    assert output.startswith("configuration OK")


def test_ambient_true_takes_the_chain_when_the_variables_are_unset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = PRODUCTION.replace("secret: ${S3_SECRET}", "secret: ${S3_SECRET}\n        ambient: true")
    code, output = check(tmp_path, text, capsys, S3_ENDPOINT="")
    assert code == EXIT_CONFIG  # the endpoint is still an unintended empty
    assert "credentials" not in output
    code, output = check(tmp_path, text.replace("${S3_ENDPOINT}", '""'), capsys)
    assert code == EXIT_OK, output


def test_an_endpoint_from_an_unset_variable_is_refused_not_taken_for_aws(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, output = check(tmp_path, PRODUCTION, capsys, S3_KEY="AKIA1", S3_SECRET="s")
    assert code == EXIT_CONFIG
    assert "s3.servers.main.endpoint: is empty (from ${S3_ENDPOINT}, which is empty or unset)" in (
        output
    )
    assert "would mean AWS S3" in output


@pytest.mark.parametrize("endpoint", ['""', "${S3_ENDPOINT:-}"])
def test_an_endpoint_left_empty_on_purpose_means_aws(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], endpoint: str
) -> None:
    text = PRODUCTION.replace("${S3_ENDPOINT}", endpoint)
    code, output = check(tmp_path, text, capsys, S3_KEY="AKIA1", S3_SECRET="s")
    assert code == EXIT_OK, output


@pytest.mark.parametrize(
    ("section", "suggested"),
    [("S3", "s3"), ("rcp", "rpc"), ("metrcs", "metrics"), ("Logs", "logs"), ("stauts", "status")],
)
def test_a_misspelt_top_level_section_is_refused_with_its_near_miss(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], section: str, suggested: str
) -> None:
    text = f"{section}:\n  default: uploads\n"
    code, output = check(tmp_path, text, capsys)
    assert code == EXIT_CONFIG
    assert f"{section}: unknown top-level section" in output
    assert f"did you mean '{suggested}'?" in output


def test_roadrunner_sections_are_accepted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from s3rpc.config.sections import ROADRUNNER_SECTIONS

    text = "".join(f"{name}: {{}}\n" for name in sorted(ROADRUNNER_SECTIONS))
    code, output = check(tmp_path, text, capsys)
    assert code == EXIT_OK, output


@pytest.mark.parametrize(
    ("region", "words"),
    [
        ("us-east1", "did you mean 'us-east-1'?"),
        ("nowhere-1", "is not an AWS region"),
        ("''", "must be an AWS region such as us-east-1"),
    ],
)
def test_a_region_aws_does_not_have_is_refused_without_an_endpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], region: str, words: str
) -> None:
    text = PRODUCTION.replace("${S3_REGION:-eu-central-1}", region).replace("${S3_ENDPOINT}", '""')
    code, output = check(tmp_path, text, capsys, S3_KEY="AKIA1", S3_SECRET="s")
    assert code == EXIT_CONFIG
    assert f"s3.servers.main.region: {words}" in output or words in output
    assert "s3.servers.main.region: " in output


@pytest.mark.parametrize("region", ["us-east-1", "eu-central-1", "cn-north-1", "us-gov-west-1"])
def test_real_aws_regions_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], region: str
) -> None:
    text = PRODUCTION.replace("${S3_ENDPOINT}", '""')
    code, output = check(tmp_path, text, capsys, S3_KEY="AKIA1", S3_SECRET="s", S3_REGION=region)
    assert code == EXIT_OK, output


def test_any_region_goes_with_an_endpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, output = check(
        tmp_path,
        PRODUCTION.replace("${S3_REGION:-eu-central-1}", "nyc3"),
        capsys,
        S3_KEY="k",
        S3_SECRET="s",
        S3_ENDPOINT="https://nyc3.digitaloceanspaces.com",
    )
    assert code == EXIT_OK, output


def test_an_inline_bucket_against_aws_needs_a_real_region(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = """
    s3:
      buckets:
        inline: {bucket: b, region: us-east1, credentials: {key: k, secret: s}}
    """
    code, output = check(tmp_path, text, capsys)
    assert code == EXIT_CONFIG
    assert "s3.buckets.inline.region: is not an AWS region" in output
    assert "did you mean 'us-east-1'?" in output


@pytest.mark.parametrize(
    ("bucket", "expected"),
    [
        ("docs: just-a-name", "s3.buckets.docs: must be a mapping of keys"),
        ('docs: {server: main, bucket: ""}', "s3.buckets.docs.bucket: must not be empty"),
        ("docs: {server: main, bucket: b, visibility: world}", "must be 'public' or 'private'"),
        ("docs: {server: main, bucket: b, part_size: 10}", "part_size: must be at least 5242880"),
        ("docs: {server: main, bucket: b, concurrency: many}", "must be a whole number"),
    ],
)
def test_messages_are_in_the_projects_words(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bucket: str, expected: str
) -> None:
    text = PRODUCTION.replace("    uploads: {server: main, bucket: app-uploads}", f"    {bucket}")
    code, output = check(
        tmp_path, text, capsys, S3_KEY="k", S3_SECRET="s", S3_ENDPOINT="http://minio:9000"
    )
    assert code == EXIT_CONFIG
    assert expected in output
    for library_words in ("Input should", "String should", "instance of", "valid dictionary"):
        assert library_words not in output


def test_connect_prints_only_the_report(tmp_path: Path) -> None:
    path = tmp_path / ".rr.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            s3:
              servers:
                m:
                  endpoint: http://127.0.0.1:{free_port()}
                  credentials: {{key: k, secret: s}}
                  max_attempts: 1
                  connect_timeout: 2
              buckets:
                u: {{server: m, bucket: b}}
            """
        ),
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("S3RPC", "AWS_"))}
    result = subprocess.run(
        [sys.executable, "-m", "s3rpc", "check-config", "--connect", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 2, result.stdout
    assert lines[0].startswith("configuration OK")
    assert lines[1].startswith("bucket 'u' (s3://b at 127.0.0.1:")
    assert "buckets ready" not in result.stdout + result.stderr


def test_ambient_with_only_a_key_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = PRODUCTION.replace("secret: ${S3_SECRET}", "secret: ${S3_SECRET}\n        ambient: true")
    code, output = check(tmp_path, text, capsys, S3_KEY="AKIA1", S3_ENDPOINT="http://minio:9000")
    assert code == EXIT_CONFIG
    assert (
        "s3.servers.main.credentials.secret: is empty (from ${S3_SECRET}, which is empty or "
        "unset); give both key and secret"
    ) in output


def test_a_missing_key_beside_a_secret_from_an_unset_variable_names_both(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = PRODUCTION.replace("        key: ${S3_KEY}\n", "")
    code, output = check(tmp_path, text, capsys, S3_ENDPOINT="http://minio:9000")
    assert code == EXIT_CONFIG
    assert "s3.servers.main.credentials.key: is missing" in output
    assert "s3.servers.main.credentials.secret: is empty (from ${S3_SECRET}" in output
    assert "credentials.ambient: true" in output
