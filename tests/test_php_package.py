"""The PHP package in php/ (s3rpc/s3rpc): its shape, and its PHPUnit tests against ``s3rpc dev``.

PHPUnit runs the client's own tests (php/tests/S3StorageTest.php), the Laravel URL methods
(LaravelUrlsTest.php) and Flysystem's ``FilesystemAdapterTestCase`` twice (default chunks;
3-byte chunks with an adapter prefix), once per codec, against ``s3rpc dev`` on a free loopback
port. It needs ``php`` and ``phpunit`` (Debian's phpunit 9.6, php-msgpack for the msgpack run)
and the goridge and flysystem sources: php/vendor, or ``$S3RPC_PHP_VENDOR`` /
``../shared/php-vendor`` (see tests/php_package.py); it skips, saying which is missing, only
when they are not there.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from php_package import PACKAGE, PHP, PHPUNIT, why_not_runnable
from s3rpc.errors import ErrorCode
from s3rpc.storage.registry import declared
from test_dev import start_dev

#: FilesystemAdapterTestCase has 55 tests in league/flysystem 3.26, run by two classes; the
#: client's and the Laravel URL tests come on top.
MIN_FLYSYSTEM_TESTS = 2 * 55
PHP_SOURCES = sorted(PACKAGE.rglob("*.php"))
needs_php = pytest.mark.skipif(PHP is None, reason="php is not on PATH (apt-get install php-cli)")


def php_method_name(rpc_method: str) -> str:
    """The client method for an ``s3.*`` method: lower camel case, ``URL`` written ``Url``
    (``s3.GetPublicURL`` -> ``getPublicUrl``, ``s3.UploadStart`` -> ``uploadStart``)."""
    name = rpc_method.removeprefix("s3.").replace("URL", "Url")
    return name[0].lower() + name[1:]


@needs_php
def test_client_has_one_method_per_daemon_method() -> None:
    """A method added to the daemon's table and not to S3Rpc\\S3Storage fails here."""
    assert PHP is not None
    script = (
        "require $argv[1];"
        "$r = new ReflectionClass(S3Rpc\\S3Storage::class);"
        "echo json_encode(array_map(fn($m) => $m->getName(),"
        " $r->getMethods(ReflectionMethod::IS_PUBLIC)));"
    )
    result = subprocess.run(
        [PHP, "-r", script, str(PACKAGE / "src/S3Storage.php")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    public = set(json.loads(result.stdout))
    expected = {php_method_name(name): name for name in declared()}
    missing = {rpc: php for php, rpc in expected.items() if php not in public}
    assert not missing, f"S3Rpc\\S3Storage has no method for {missing}"


def test_php_method_names() -> None:
    assert php_method_name("s3.GetPublicURL") == "getPublicUrl"
    assert php_method_name("s3.GetUploadURL") == "getUploadUrl"
    assert php_method_name("s3.Ping") == "ping"


def test_php_exceptions_cover_every_error_code() -> None:
    source = (PACKAGE / "src/Exception/S3Exception.php").read_text(encoding="utf-8")
    mapping = dict(re.findall(r"'([A-Z0-9_]+)' => (\w+)::class", source))
    assert set(mapping) == {code.value for code in ErrorCode}
    assert len(set(mapping.values())) == len(mapping)
    for class_name in mapping.values():
        file = PACKAGE / "src/Exception" / f"{class_name}.php"
        assert file.is_file(), f"{file} is missing"
        assert f"class {class_name} extends S3Exception" in file.read_text(encoding="utf-8")


def test_composer_json_is_a_psr4_library() -> None:
    composer = json.loads((PACKAGE / "composer.json").read_text(encoding="utf-8"))
    assert composer["type"] == "library"
    assert composer["autoload"]["psr-4"] == {"S3Rpc\\": "src/"}
    assert composer["require"]["spiral/goridge"].startswith("^4")
    assert composer["require"]["league/flysystem"].startswith("^3")
    assert composer["require"]["php"] == ">=8.1"
    assert "ext-msgpack" in composer["suggest"]
    assert composer["extra"]["laravel"]["providers"] == ["S3Rpc\\Laravel\\S3RpcServiceProvider"]
    example = json.loads((PACKAGE.parent / "examples/php/composer.json").read_text("utf-8"))
    assert example["repositories"] == [{"type": "path", "url": "../../php"}]
    assert composer["name"] in example["require"]


@needs_php
@pytest.mark.parametrize("path", PHP_SOURCES, ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_php_lint(path: Path) -> None:
    assert PHP is not None
    result = subprocess.run(
        [PHP, "-l", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


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
def test_phpunit_against_dev_daemon(codec: str, tmp_path: Path) -> None:
    """Every PHP test passes under the codec, none skipped."""
    why = why_not_runnable(phpunit=True, flysystem=True)
    if why is not None:
        pytest.skip(why)
    assert PHPUNIT is not None
    if codec == "msgpack" and not _php_has_msgpack():
        pytest.skip("ext-msgpack is not loaded in php (apt-get install php-msgpack)")
    junit = tmp_path / "junit.xml"
    dev = start_dev(tmp_path / "dev")
    try:
        result = subprocess.run(
            [
                PHPUNIT,
                "--configuration",
                str(PACKAGE / "phpunit.xml.dist"),
                "--log-junit",
                str(junit),
            ],
            cwd=tmp_path,
            env={**os.environ, "S3RPC_RPC": dev.address, "S3RPC_CODEC": codec},
            capture_output=True,
            text=True,
            timeout=540,
            check=False,
        )
    finally:
        dev.stop()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert junit.is_file(), output

    skipped, failed, classes = [], [], {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = f"{case.get('class')}::{case.get('name')}"
        short = (case.get("class") or "").rsplit("\\", 1)[-1]
        classes[short] = classes.get(short, 0) + 1
        if case.find("skipped") is not None:
            skipped.append(name)
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(name)
    assert not failed, output
    assert not skipped, output
    flysystem = [classes.get(c, 0) for c in ("S3RpcAdapterTest", "S3RpcAdapterWithSmallChunksTest")]
    assert sum(flysystem) >= MIN_FLYSYSTEM_TESTS, classes
    assert classes.get("S3StorageTest", 0) >= 10, classes
    assert classes.get("LaravelUrlsTest", 0) >= 5, classes
