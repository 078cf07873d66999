"""The docs stay true: the mkdocs site builds with no broken link or anchor, and every ``sh`` and
``php`` example of README.md, docs/*.md and the examples/ READMEs runs (php/README.md's are
parsed and method-checked; php/tests runs what they show).

Examples are the fenced blocks tagged ``sh`` or ``php``. Every page's runnable blocks run against
one ``s3rpc dev -c .rr.yaml.example`` started here on a free port (the documented config: the
server ``main``, the buckets ``uploads`` and ``private-docs``): ``127.0.0.1:6001`` in a block
becomes its address (and ``RR_RPC`` is set to it), ``.venv/bin/`` this interpreter's directory,
``/tmp/`` a temporary directory. Shell blocks run one by one under ``bash -e`` in the repository
root; a page's PHP blocks run in order as one script (later blocks use the ``$rpc`` an earlier
one made), with php-cli and the package in php/ (its autoloader, php/tests/autoload.php, finds
goridge as tests/php_package.py says; ``require 'vendor/autoload.php'`` is replaced by it) and
the placeholders of PHP_PLACEHOLDERS defined.

A block that cannot run here (it installs a system service, serves forever, needs packagist or
takes minutes) has ``<!-- not run: why -->`` on the line above its fence; the reason is required.
Such blocks are still checked: ``bash -n`` or ``php -l``, and every ``s3.*`` method a PHP block
calls must be one the daemon serves.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from php_package import PHP, ROOT, why_not_runnable
from s3rpc.storage.registry import declared
from test_dev import DevProcess, start_dev

PAGES = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "examples" / "README.md",
    ROOT / "examples" / "php" / "README.md",
]
#: Pages whose blocks are only parsed and method-checked: php/README.md's fragments (Laravel
#: facades, request globals) are exercised by the package's PHPUnit tests instead.
PARSED_ONLY = [ROOT / "php" / "README.md"]
LANGS = ("sh", "php")
NOT_RUN = re.compile(r"^<!-- not run(?::\s*(?P<why>.*?))?\s*-->$")
FENCE = re.compile(r"^```(?P<lang>[\w-]*)\s*$")
RUN_TIMEOUT = 120
#: What the examples take as given, as an app would have it: the bytes of an avatar and a PDF,
#: and a partner's S3 keys (inline credentials are only stored: registration does not connect).
PHP_PLACEHOLDERS = """\
$jpeg = random_bytes(51234);
$pdf = "%PDF-1.4\\n%\\xe2\\xe3\\xcf\\xd3\\n";
$key = 'AKIAEXAMPLEPARTNER';
$secret = 'partner-secret-example';
"""
MKDOCS_TIMEOUT = 120


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    not_run: str | None  # the reason, when the block is marked not to run

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line} ({self.lang})"


def blocks(page: Path) -> list[Block]:
    """The page's fenced blocks in LANGS, with the ``not run`` marker just above each."""
    found: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if fence is None:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), None)
        assert end is not None, f"{page}:{i + 1}: unclosed code fence"
        marker = NOT_RUN.match(lines[i - 1].strip()) if i > 0 else None
        if fence["lang"] in LANGS:
            why = None if marker is None else (marker["why"] or "")
            found.append(Block(page, i + 1, fence["lang"], "\n".join(lines[i + 1 : end]), why))
        i = end + 1
    return found


ALL_BLOCKS = [block for page in PAGES for block in blocks(page)]
PARSED_BLOCKS = ALL_BLOCKS + [block for page in PARSED_ONLY for block in blocks(page)]


def test_the_pages_have_examples_and_every_not_run_marker_says_why_above_a_block() -> None:
    assert len(ALL_BLOCKS) >= 10, [str(b) for b in ALL_BLOCKS]
    for block in ALL_BLOCKS:
        assert block.not_run != "", f"{block}: '<!-- not run -->' needs a reason after a colon"
    # A marker anywhere but right above an sh/php fence would silently mean nothing.
    marked = {(b.page, b.line - 1) for b in ALL_BLOCKS if b.not_run is not None}
    for page in PAGES:
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            if line.startswith("<!-- not run"):
                where = f"{page.relative_to(ROOT)}:{number}"
                assert (page, number) in marked, f"{where}: marker not right above an sh/php block"


@pytest.mark.parametrize("block", [b for b in PARSED_BLOCKS if b.lang == "sh"], ids=str)
def test_every_shell_example_parses(block: Block) -> None:
    result = subprocess.run(
        ["bash", "-n"], input=block.code, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, f"{block}:\n{result.stderr}"


@pytest.mark.skipif(PHP is None, reason="php is not on PATH (apt-get install php-cli)")
@pytest.mark.parametrize("block", [b for b in PARSED_BLOCKS if b.lang == "php"], ids=str)
def test_every_php_example_parses_and_calls_only_served_methods(
    block: Block, tmp_path: Path
) -> None:
    script = tmp_path / "example.php"
    script.write_text(_php_source(block.code, prelude=""), encoding="utf-8")
    assert PHP is not None
    result = subprocess.run([PHP, "-l", str(script)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, f"{block}:\n{result.stdout}{result.stderr}"
    called = set(re.findall(r"""['"](s3\.[A-Za-z]+)['"]""", block.code))
    assert called <= set(declared()), f"{block}: not served: {sorted(called - set(declared()))}"


def _php_source(code: str, prelude: str) -> str:
    """One script of ``code`` (one or more blocks), its ``use`` imports first, once each."""
    code = re.sub(r"^<\?php\s*$", "", code, flags=re.M)
    code = re.sub(r"^require\s+'vendor/autoload\.php';\s*$", "", code, flags=re.M)
    imports = re.compile(r"^use [^;()]+;\s*$", re.M)
    uses = "\n".join(dict.fromkeys(line.strip() for line in imports.findall(code)))
    return f"<?php\n{uses}\n{prelude}\n{imports.sub('', code)}\n"


def _rewrite(code: str, address: str, tmp: Path) -> str:
    host_port = address.removeprefix("tcp://")
    code = code.replace("127.0.0.1:6001", host_port)
    code = code.replace(".venv/bin/", f"{Path(sys.executable).parent}/")
    return code.replace("/tmp/", f"{tmp}/")


@pytest.fixture(scope="module")
def docs_dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevProcess]:
    """One ``s3rpc dev`` (default buckets) for every page's examples."""
    dev = start_dev(tmp_path_factory.mktemp("docs-dev"), "-c", str(ROOT / ".rr.yaml.example"))
    try:
        yield dev
    finally:
        dev.stop()


RUNNABLE_PAGES = [p for p in PAGES if any(b.not_run is None for b in blocks(p))]


@pytest.mark.parametrize("page", RUNNABLE_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_runnable_example_of_the_page_runs(
    page: Path, docs_dev: DevProcess, tmp_path: Path
) -> None:
    runnable = [b for b in blocks(page) if b.not_run is None]
    if any(b.lang == "php" for b in runnable):
        why = why_not_runnable()
        if why is not None:
            pytest.skip(why)
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "RR_RPC": docs_dev.address,
        "LANG": "C.UTF-8",
    }
    autoload = ROOT / "php" / "tests" / "autoload.php"
    prelude = (
        f"$__why = require {str(autoload)!r};\n"
        "if ($__why !== null) { fwrite(STDERR, $__why . \"\\n\"); exit(3); }"
    )
    runs: list[tuple[str, list[str], str]] = []
    for block in runnable:
        if block.lang == "sh":
            code = _rewrite(block.code, docs_dev.address, tmp_path)
            runs.append((str(block), ["bash", "-e", "-o", "pipefail", "-c", code], code))
    php_blocks = [b for b in runnable if b.lang == "php"]
    if php_blocks:
        code = "\n".join(_rewrite(b.code, docs_dev.address, tmp_path) for b in php_blocks)
        source = _php_source(code, f"{prelude}\n{PHP_PLACEHOLDERS}")
        script = tmp_path / "examples.php"
        script.write_text(source, encoding="utf-8")
        assert PHP is not None
        # A warning (an undefined variable, say) is a broken example too.
        argv = [PHP, "-d", "error_reporting=E_ALL", "-d", "display_errors=stderr", str(script)]
        runs.append((", ".join(map(str, php_blocks)), argv, source))
    for name, argv, code in runs:
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=RUN_TIMEOUT, env=env, cwd=ROOT
        )
        broken = result.returncode != 0 or "Warning" in result.stderr
        assert not broken, (
            f"{name} failed ({result.returncode}):\n{code}\n--- stdout\n{result.stdout}"
            f"\n--- stderr\n{result.stderr}"
        )


MKDOCS = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")
needs_mkdocs = pytest.mark.skipif(
    MKDOCS is None, reason="mkdocs is not installed (pip install -e '.[test]' brings it)"
)


def _build(project: Path, site: Path) -> subprocess.CompletedProcess[str]:
    assert MKDOCS is not None
    return subprocess.run(
        [MKDOCS, "build", "--strict", "--site-dir", str(site)],
        capture_output=True,
        text=True,
        timeout=MKDOCS_TIMEOUT,
        cwd=project,
    )


@needs_mkdocs
def test_the_docs_site_builds_strict(tmp_path: Path) -> None:
    result = _build(ROOT, tmp_path / "site")
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    assert (tmp_path / "site" / "operating" / "index.html").is_file()


@needs_mkdocs
@pytest.mark.parametrize(
    ("link", "complaint"),
    [
        ("[x](operating.md#no-such-anchor)", "does not contain an anchor '#no-such-anchor'"),
        ("[x](#no-such-anchor)", "'#no-such-anchor'"),
        ("[x](no-such-page.md)", "not found among documentation files"),
    ],
    ids=["anchor-on-another-page", "anchor-on-the-page", "missing-page"],
)
def test_a_broken_link_or_anchor_fails_the_build(
    link: str, complaint: str, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    shutil.copytree(ROOT / "docs", project / "docs")
    shutil.copy(ROOT / "mkdocs.yml", project / "mkdocs.yml")
    index = project / "docs" / "index.md"
    index.write_text(index.read_text(encoding="utf-8") + f"\nSee {link}.\n", encoding="utf-8")
    result = _build(project, tmp_path / "site")
    assert result.returncode != 0, result.stderr
    assert complaint in result.stderr, result.stderr


LINK = re.compile(r"\[[^\]]*\]\((?P<target>[^)\s]+)\)")


def _github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = page.read_text(encoding="utf-8")
    found = {_github_slug(m) for m in re.findall(r"^#+ (.+)$", text, flags=re.M)}
    return found | set(re.findall(r'<a id="([^"]+)"', text))


@pytest.mark.parametrize(
    "page",
    [ROOT / "README.md", *PARSED_ONLY, ROOT / "examples" / "README.md", PAGES[-1]],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_the_links_of_pages_outside_the_site_resolve(page: Path) -> None:
    """mkdocs checks docs/; the READMEs link into it and to each other, so check those here."""
    broken = []
    for match in LINK.finditer(page.read_text(encoding="utf-8")):
        target = match["target"]
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(f"{target}: no such anchor")
    assert not broken, f"{page.relative_to(ROOT)}: {broken}"
