"""Where the PHP package (php/) and the PHP sources its tests need are, for the tests that run PHP.

Without a composer ``vendor/`` in php/, spiral/goridge and league/flysystem come from
``$S3RPC_PHP_VENDOR`` or ``../shared/php-vendor`` beside the repository (the CI machine's
layout: ``spiral-goridge/src``, ``league-flysystem/src``); php/tests/autoload.php looks in the
same places. :func:`why_not_runnable` says why PHP tests cannot run, or None.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "php"
PHP = shutil.which("php")
PHPUNIT = shutil.which("phpunit")


def vendor_candidates() -> list[Path]:
    env = os.environ.get("S3RPC_PHP_VENDOR")
    return ([Path(env)] if env else []) + [ROOT.parent / "shared" / "php-vendor"]


def why_not_runnable(*, phpunit: bool = False, flysystem: bool = False) -> str | None:
    """Why the PHP sources or tools are missing, or None when the tests can run."""
    if PHP is None:
        return "php is not on PATH (apt-get install php-cli php-msgpack)"
    if phpunit and PHPUNIT is None:
        return "phpunit is not on PATH (apt-get install phpunit)"
    if (PACKAGE / "vendor" / "autoload.php").is_file():
        return None
    for vendor in vendor_candidates():
        if (vendor / "spiral-goridge/src/RPC/RPC.php").is_file():
            test_case = vendor / "league-flysystem/src/AdapterTestUtilities"
            test_case /= "FilesystemAdapterTestCase.php"
            if flysystem and not test_case.is_file():
                return f"{test_case} does not exist"
            return None
    where = " or ".join(str(v) for v in vendor_candidates())
    return (
        f"no php/vendor (composer install) and no spiral-goridge/src in {where} "
        "(set S3RPC_PHP_VENDOR; see php/README.md)"
    )
