"""Flysystem's own adapter test suite against ``s3rpc dev``: the PHP adapter in examples/php.

Opt-in: it needs ``php`` and ``phpunit`` on PATH and the PHP sources the suite runs on, which are
not part of this repository. Set ``FLYSYSTEM_SRC`` to a directory holding ``flysystem/`` (the
``src/`` of league/flysystem 3.x, with its ``AdapterTestUtilities/``) and ``goridge/`` (the
``src/`` of spiral/goridge v4); league/mime-type-detection comes from ``mime-type-detection/``
there or from Debian's php-league-mime-type-detection. See examples/php/README.md, "Flysystem
adapter", for how to assemble it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
PHP_DIR = ROOT / "examples" / "php"
PHP = shutil.which("php")
PHPUNIT = shutil.which("phpunit")
FLYSYSTEM_SRC = os.environ.get("FLYSYSTEM_SRC", "")

#: No test is skipped: empty directories are s3.CreateDirectory markers.
EXPECTED_SKIPS: set[str] = set()
#: FilesystemAdapterTestCase has 55 tests (with the data provider's cases) in league/flysystem
#: 3.26; both test classes (default; 3-byte stream chunks with an adapter prefix) run all of them.
MIN_TESTS = 2 * 55


def _why_skip() -> str | None:
    if not FLYSYSTEM_SRC:
        return (
            "set FLYSYSTEM_SRC to a directory with flysystem/ (league/flysystem 3.x src/, "
            "including AdapterTestUtilities/) and goridge/ (spiral/goridge v4 src/) to run "
            "Flysystem's adapter test suite"
        )
    test_case = Path(FLYSYSTEM_SRC, "flysystem/AdapterTestUtilities/FilesystemAdapterTestCase.php")
    if not test_case.is_file():
        return f"FLYSYSTEM_SRC={FLYSYSTEM_SRC}: {test_case} does not exist"
    if not Path(FLYSYSTEM_SRC, "goridge/RPC/RPC.php").is_file():
        return f"FLYSYSTEM_SRC={FLYSYSTEM_SRC}: goridge/RPC/RPC.php does not exist"
    if PHP is None or PHPUNIT is None:
        return "php and phpunit must be on PATH (apt-get install php-cli phpunit)"
    return None


pytestmark = pytest.mark.skipif(_why_skip() is not None, reason=_why_skip() or "")


def _php_has_msgpack() -> bool:
    assert PHP is not None
    result = subprocess.run(
        [PHP, "-r", "echo extension_loaded('msgpack') ? 'yes' : 'no';"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return result.stdout.strip() == "yes"


@pytest.mark.timeout(600)
@pytest.mark.parametrize("codec", ["json", "msgpack"])
def test_flysystem_adapter_test_suite(codec: str, tmp_path: Path) -> None:
    """Every FilesystemAdapterTestCase test passes, none skipped."""
    assert PHPUNIT is not None
    if codec == "msgpack" and not _php_has_msgpack():
        pytest.skip("ext-msgpack is not loaded in php (apt-get install php-msgpack)")
    port = free_port()
    junit = tmp_path / "junit.xml"
    log = (tmp_path / "dev.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "s3rpc", "dev", "--listen", f"tcp://127.0.0.1:{port}"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, proc)
        result = subprocess.run(
            [
                PHPUNIT,
                "--do-not-cache-result",
                "--bootstrap",
                str(PHP_DIR / "tests" / "bootstrap.php"),
                "--log-junit",
                str(junit),
                str(PHP_DIR / "tests"),
            ],
            cwd=tmp_path,
            env={**os.environ, "S3RPC_RPC": f"tcp://127.0.0.1:{port}", "S3RPC_CODEC": codec},
            capture_output=True,
            text=True,
            timeout=540,
            check=False,
        )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert junit.is_file(), output

    cases = ET.parse(junit).getroot().iter("testcase")
    skipped, failed, total = set(), [], 0
    for case in cases:
        total += 1
        name = f"{case.get('class')}::{case.get('name')}"
        if case.find("skipped") is not None:
            skipped.add(name)
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(name)
    assert not failed, output
    assert total >= MIN_TESTS, output
    assert skipped == EXPECTED_SKIPS, output
