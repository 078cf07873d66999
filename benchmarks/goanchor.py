"""The Go anchor of the benchmarks: finding Go and aws-sdk-go-v2, building
``benchmarks/anchors/go/main.go`` once into a cache outside the repository, and running it.

The build is offline and uses only what is installed: ``go`` on ``PATH`` and the SDK's sources in
a GOPATH tree, Debian's ``/usr/share/gocode`` (``apt-get install golang-go
golang-github-aws-aws-sdk-go-v2-dev``) or an entry of ``$GOPATH``. It runs in GOPATH mode
(``GO111MODULE=off``, ``GOPROXY=off``, ``CGO_ENABLED=0``) into ``$TMPDIR/s3rpc-goanchor``, named
by a hash of the source, the Go version and the SDK's version, so a later run reuses it and a
changed source or toolchain builds anew. When something is missing, :func:`go_anchor` says what.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "anchors" / "go" / "main.go"
CACHE = Path(tempfile.gettempdir()) / "s3rpc-goanchor"
APT_HINT = "apt-get install golang-go golang-github-aws-aws-sdk-go-v2-dev"
_SDK = Path("src/github.com/aws/aws-sdk-go-v2")
_S3_VERSION = _SDK / "service/s3/go_module_metadata.go"


@dataclass(frozen=True)
class GoAnchor:
    """A built anchor: the binary and what it was built with."""

    binary: Path
    go: str
    sdk: str
    built_seconds: float | None  # None: taken from the cache

    def describe(self) -> str:
        how = (
            "from the cache"
            if self.built_seconds is None
            else f"built in {self.built_seconds:.0f} s"
        )
        return f"benchmarks/anchors/go ({self.go}, aws-sdk-go-v2 {self.sdk}; {how}: {self.binary})"


def sdk_roots() -> list[Path]:
    """GOPATH entries that hold aws-sdk-go-v2's S3 client: ``$GOPATH``'s, then Debian's."""
    candidates = [Path(p) for p in os.environ.get("GOPATH", "").split(os.pathsep) if p]
    candidates.append(Path("/usr/share/gocode"))
    return [root for root in candidates if (root / _S3_VERSION).is_file()]


def go_anchor(timeout: float = 300.0) -> tuple[GoAnchor | None, str]:
    """The anchor, built if needed, and a line saying what was used; or None and why not."""
    go = shutil.which("go")
    if go is None:
        return None, f"no `go` on PATH ({APT_HINT})"
    roots = sdk_roots()
    if not roots:
        return None, (
            "aws-sdk-go-v2 not found in $GOPATH or /usr/share/gocode (Debian: "
            "apt-get install golang-github-aws-aws-sdk-go-v2-dev)"
        )
    try:
        go_version = subprocess.run(
            [go, "env", "GOVERSION"], capture_output=True, text=True, timeout=60, check=True
        ).stdout.strip()
    except (subprocess.SubprocessError, OSError) as exc:
        return None, f"`go env GOVERSION` failed: {exc}"
    key = hashlib.sha256()
    key.update(SOURCE.read_bytes())
    key.update(go_version.encode())
    for root in roots:
        key.update(str(root).encode())
        key.update((root / _S3_VERSION).read_bytes())
    binary = CACHE / f"goanchor-{key.hexdigest()[:16]}"
    built_seconds: float | None = None
    if not binary.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        print(f"building the Go anchor into {CACHE} (offline, first run ~1 min) ...", flush=True)
        started = time.monotonic()
        partial = binary.with_name(f"{binary.name}.{os.getpid()}.tmp")
        env = {
            **os.environ,
            "GO111MODULE": "off",
            "GOPROXY": "off",
            "GOFLAGS": "",
            "CGO_ENABLED": "0",
            "GOPATH": os.pathsep.join([str(CACHE / "gopath"), *map(str, roots)]),
            "GOCACHE": str(CACHE / "go-build"),
        }
        try:
            done = subprocess.run(
                [go, "build", "-o", str(partial), str(SOURCE)],
                capture_output=True,
                text=True,
                timeout=timeout,
                env=env,
                cwd=SOURCE.parent,
            )
        except (subprocess.SubprocessError, OSError) as exc:
            with contextlib.suppress(OSError):
                partial.unlink()
            return None, f"`go build` of benchmarks/anchors/go failed: {exc}"
        if done.returncode != 0:
            with contextlib.suppress(OSError):
                partial.unlink()
            return None, f"`go build` of benchmarks/anchors/go failed:\n{done.stderr[-1500:]}"
        partial.replace(binary)  # atomic: a concurrent run sees a whole binary or none
        built_seconds = time.monotonic() - started
    try:
        answer = subprocess.run(
            [str(binary), "-version"], capture_output=True, text=True, timeout=30, check=True
        )
        found = json.loads(answer.stdout)
    except (subprocess.SubprocessError, OSError, ValueError) as exc:
        return None, f"the Go anchor {binary} does not run: {exc}"
    anchor = GoAnchor(binary, str(found["go"]), str(found["sdk"]), built_seconds)
    return anchor, anchor.describe()
