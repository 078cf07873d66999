"""A throw-away Ceph RADOS Gateway (RGW 16, Debian's packages) on 127.0.0.1: a real S3 for tests.

One monitor, one memstore OSD (all objects live in the OSD's RAM and vanish with it), no mgr,
and radosgw with the beast frontend, every socket on loopback and every file in one fresh state
directory under /tmp. ``RgwCluster.start()`` brings it up in a few seconds (plus ~30 s the first
time on a machine without the packages, which it installs with apt-get when it runs as root) and
returns the S3 endpoint; ``stop()`` kills the three daemons by their process ids and removes the
state directory. Both are idempotent, every external command has a timeout, a failed start stops
whatever it had started and raises :class:`RgwStartError` with the tails of the daemons' logs, and
the daemons are tied to the starting process (``PR_SET_PDEATHSIG``) so that even a killed test run
leaves none behind (the next start removes the state directory such a run left).

Run by hand: ``python tests/backends/rgw.py`` prints ``READY <endpoint> <access key> <secret>``
and keeps the cluster up until Ctrl-C.

Why the settings below (each one cost a slow or a failed start without it):
- ``paxos propose interval``: the monitor batches map changes for 1 s by default, and starting
  needs a dozen of them (OSD boot, each pool); 10 ms makes the start take seconds, not ~20 s.
- cephx inside the cluster: with ``auth = none`` a client or the OSD may send its first command
  before it has the monmap, gets ``wrong fsid`` and the OSD exits at init.
- pg_num 8, pool size 1, autoscaler off: one OSD cannot hold 7 pools of the default 32 PGs.
- the RGW pools are created up front, by one librados process while the OSD boots; otherwise
  radosgw creates them lazily and the first CreateBucket and PutObject stall for seconds.
- no mgr: S3 needs none; its absence is kept out of the health checks.
- client admin sockets are off: short-lived CLI clients would collide on one socket path.
- RGW GC runs every 30 s instead of after 2 h, so RAM of deleted objects comes back.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

#: Debian packages that bring radosgw, ceph-mon, ceph-osd and the CLIs they need.
PACKAGES = ("radosgw", "ceph-mon", "ceph-osd")
BINARIES = (
    "radosgw",
    "radosgw-admin",
    "ceph-mon",
    "ceph-osd",
    "ceph",
    "ceph-authtool",
    "monmaptool",
)
#: The interpreter that has Debian's ``rados`` module (a venv's python has not).
SYSTEM_PYTHON = "/usr/bin/python3"
RGW_POOLS = (
    ".rgw.root",
    "default.rgw.log",
    "default.rgw.control",
    "default.rgw.meta",
    "default.rgw.buckets.index",
    "default.rgw.buckets.data",
    "default.rgw.buckets.non-ec",
)
#: Storage classes besides STANDARD that the zone accepts (RGW refuses an unknown one with
#: InvalidArgument); they share the one data pool.
EXTRA_STORAGE_CLASSES = ("REDUCED_REDUNDANCY", "STANDARD_IA")
STATE_PREFIX = "s3rpc-rgw-"
INSTALL_TIMEOUT = 600.0
RGW_PORT_ATTEMPTS = 3
COMMAND_TIMEOUT = 60.0
LOG_TAIL_LINES = 25


class RgwUnavailable(RuntimeError):
    """RGW cannot run on this machine (packages missing and no way to install them)."""


class RgwStartError(RuntimeError):
    """The cluster did not come up; the message carries the daemons' log tails."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def missing_binaries() -> list[str]:
    return [name for name in BINARIES if shutil.which(name) is None]


def ensure_installed(log: list[str]) -> None:
    """Install the Debian packages when a binary is missing (root only), else raise."""
    missing = missing_binaries()
    if not missing and Path(SYSTEM_PYTHON).exists():
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise RgwUnavailable(
            f"Ceph RGW is not installed ({', '.join(missing) or SYSTEM_PYTHON} missing) and this "
            f"process cannot install it: run `apt-get install -y --no-install-recommends "
            f"{' '.join(PACKAGES)}` as root, or set S3RPC_TEST_BACKENDS=moto to skip the RGW tests"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES, "python3"],
    ):
        done = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False
        )
        log.append(f"$ {' '.join(argv)} -> {done.returncode}")
        if done.returncode != 0:
            raise RgwUnavailable(f"{' '.join(argv)} failed:\n{done.stderr[-2000:]}")
    if still := missing_binaries():
        raise RgwUnavailable(f"installed {PACKAGES} but {still} are still missing")


def remove_orphaned_directories() -> None:
    """Remove state directories whose starting process is gone (it was killed before it could
    clean up; its daemons died with it)."""
    for path in Path("/tmp").glob(STATE_PREFIX + "*"):
        try:
            owner = int((path / "owner").read_text())
        except (OSError, ValueError):
            continue  # not ours, or just being created
        try:
            os.kill(owner, 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:
            pass  # alive, someone else's


def _die_with_parent() -> None:
    """preexec_fn: the daemon gets SIGKILL when the process that started it dies."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


CEPH_CONF = """\
[global]
fsid = {fsid}
mon host = v1:127.0.0.1:{mon_port}
mon initial members = a
public network = 127.0.0.0/8
public addr = 127.0.0.1
ms bind msgr2 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = {dir}/keyring
run dir = {dir}/run
admin socket = {dir}/run/$name.asok
log file = {dir}/log/$name.log
crash dir = {dir}/crash
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
mon warn on insecure global id reclaim allowed = false
mon mgr mkfs grace = 31536000
mon data avail warn = 1
mon data avail crit = 0
mon max pg per osd = 1000
paxos propose interval = 0.01
paxos min wait = 0.01

[client]
admin socket =

[mon]
mon data = {dir}/mon

[osd]
osd data = {dir}/osd
osd objectstore = memstore
memstore device bytes = {mem_bytes}

[client.rgw]
admin socket = {dir}/run/$name.asok
rgw frontends = beast endpoint=127.0.0.1:{s3_port}
rgw data = {dir}/rgw
rgw dns name = localhost
rgw gc obj min wait = 30
rgw gc processor period = 30
"""

#: Run by SYSTEM_PYTHON: create the RGW pools through librados, retrying a command that is
#: refused while the client does not have the monmap yet.
CREATE_POOLS = """\
import json, os, sys, time, rados
cluster = rados.Rados(conffile=os.environ["CEPH_CONF"], name="client.admin")
cluster.connect(timeout=30)
def command(**kw):
    for _ in range(100):
        ret, _out, err = cluster.mon_command(json.dumps(kw), b"", timeout=30)
        if ret == 0:
            return
        time.sleep(0.1)
    sys.exit(f"{kw}: {ret} {err}")
for pool in sys.argv[1:]:
    command(prefix="osd pool create", pool=pool, pg_num=8, pgp_num=8)
    command(prefix="osd pool application enable", pool=pool, app="rgw")
cluster.shutdown()
"""


@dataclass
class RgwCluster:
    """``cluster = RgwCluster(keys={"ak": "sk"}).start(); cluster.endpoint; cluster.stop()``.

    ``keys`` are the S3 access key -> secret pairs to create, all for one user (the first pair
    is the user's own; the others are extra keys of the same user, so buckets made with one
    are reachable with any).
    """

    keys: dict[str, str]
    timeout: float = 120.0
    mem_bytes: int = 4 << 30
    endpoint: str = ""
    directory: Path | None = None
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> RgwCluster:
        ensure_installed(self.log)
        atexit.register(self.stop)
        started = time.monotonic()
        try:
            self._start()
        except BaseException as exc:  # also Ctrl-C: never leave daemons or the directory
            tails = self.log_tails()
            self.stop()
            if isinstance(exc, RgwStartError | subprocess.TimeoutExpired | OSError):
                raise RgwStartError(f"RGW did not start: {exc}\n{tails}") from exc
            raise
        self.log.append(f"up in {time.monotonic() - started:.1f} s at {self.endpoint}")
        return self

    def stop(self) -> None:
        """Kill the daemons (TERM, then KILL after 2 s) and remove the state directory."""
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
        deadline = time.monotonic() + 2
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
        self.procs.clear()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None
        atexit.unregister(self.stop)

    def __enter__(self) -> RgwCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the steps ----------------------------------------------------------------------------

    def _start(self) -> None:
        remove_orphaned_directories()
        self.directory = Path(tempfile.mkdtemp(prefix=STATE_PREFIX, dir="/tmp"))
        d = self.directory
        (d / "owner").write_text(str(os.getpid()))
        for sub in ("mon", "osd", "run", "log", "rgw", "crash"):
            (d / sub).mkdir()
        s3_port, mon_port, fsid = free_port(), free_port(), str(uuid.uuid4())
        (d / "ceph.conf").write_text(
            CEPH_CONF.format(
                fsid=fsid,
                dir=d,
                mon_port=mon_port,
                s3_port=s3_port,
                mem_bytes=self.mem_bytes,
            )
        )
        self.env = {**os.environ, "CEPH_CONF": str(d / "ceph.conf")}
        deadline = time.monotonic() + self.timeout

        keyring = str(d / "keyring")
        self._run(
            "ceph-authtool", "-C", keyring, "--gen-key", "-n", "mon.", "--cap", "mon", "allow *"
        )
        for name, caps in (
            ("client.admin", ["mon", "allow *", "osd", "allow *", "mgr", "allow *"]),
            ("osd.0", ["mon", "allow profile osd", "mgr", "allow profile osd", "osd", "allow *"]),
            ("client.rgw", ["mon", "allow rw", "osd", "allow rwx", "mgr", "allow rw"]),
        ):
            cap_args = [a for i in range(0, len(caps), 2) for a in ("--cap", caps[i], caps[i + 1])]
            self._run("ceph-authtool", keyring, "--gen-key", "-n", name, *cap_args)
        self._run(
            "monmaptool",
            "--create",
            "--fsid",
            fsid,
            "--addv",
            "a",
            f"[v1:127.0.0.1:{mon_port}]",
            str(d / "monmap"),
        )
        self._run(
            "ceph-mon", "--mkfs", "-i", "a", "--monmap", str(d / "monmap"), "--keyring", keyring
        )
        self._spawn("mon", "ceph-mon", "-f", "-i", "a")
        self._wait("the monitor", deadline, lambda: self._ceph_ok("mon", "stat"))

        pools = subprocess.Popen(
            [SYSTEM_PYTHON, "-c", CREATE_POOLS, *RGW_POOLS],
            env=self.env,
            stdout=(d / "log" / "pools.out").open("wb"),
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        try:
            osd_uuid = str(uuid.uuid4())
            osd_id = self._retry(
                deadline, "ceph", "--connect-timeout", "10", "osd", "new", osd_uuid
            )
            self._run("ceph-osd", "-i", osd_id, "--mkfs", "--osd-uuid", osd_uuid)
            self._spawn("osd", "ceph-osd", "-f", "-i", osd_id)
            self._wait("the OSD", deadline, self._osd_up)
            try:
                code = pools.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise RgwStartError("timed out creating the RGW pools") from None
            if code != 0:
                raise RgwStartError(f"creating the RGW pools failed ({code})")
        finally:
            if pools.poll() is None:
                pools.kill()
                pools.wait(timeout=5)

        (access, secret), *extra = self.keys.items()
        self._run(
            "radosgw-admin",
            "-n",
            "client.rgw",
            "user",
            "create",
            "--uid=tester",
            "--display-name=s3rpc tests",
            "--max-buckets=0",  # no limit: the default 1000 is less than a test run creates
            f"--access-key={access}",
            f"--secret-key={secret}",
        )
        for access, secret in extra:
            self._run(
                "radosgw-admin",
                "-n",
                "client.rgw",
                "key",
                "create",
                "--uid=tester",
                "--key-type=s3",
                f"--access-key={access}",
                f"--secret-key={secret}",
            )
        for storage_class in EXTRA_STORAGE_CLASSES:
            self._run(
                "radosgw-admin",
                "-n",
                "client.rgw",
                "zonegroup",
                "placement",
                "add",
                "--rgw-zonegroup=default",
                "--placement-id=default-placement",
                f"--storage-class={storage_class}",
            )
            self._run(
                "radosgw-admin",
                "-n",
                "client.rgw",
                "zone",
                "placement",
                "add",
                "--rgw-zone=default",
                "--placement-id=default-placement",
                f"--storage-class={storage_class}",
                "--data-pool=default.rgw.buckets.data",
            )
        for attempt in range(1, RGW_PORT_ATTEMPTS + 1):
            self.endpoint = f"http://127.0.0.1:{s3_port}"
            self._spawn("rgw", "radosgw", "-f", "-n", "client.rgw")
            try:
                self._wait(f"radosgw on {self.endpoint}", deadline, self._s3_answers)
                return
            except RgwStartError:
                # beast cannot bind port 0 and tell us the port: the free port we picked may
                # have been taken meanwhile. Then radosgw exits; try another one.
                rgw = self.procs.pop("rgw")
                if rgw.poll() is None or attempt == RGW_PORT_ATTEMPTS:
                    self.procs["rgw"] = rgw
                    raise
                old, s3_port = s3_port, free_port()
                conf = d / "ceph.conf"
                conf.write_text(
                    conf.read_text().replace(f"127.0.0.1:{old}\n", f"127.0.0.1:{s3_port}\n")
                )
                self.log.append(f"radosgw exited on port {old}; retrying on {s3_port}")

    # -- helpers ------------------------------------------------------------------------------

    def _run(self, *argv: str, timeout: float = COMMAND_TIMEOUT) -> str:
        done = subprocess.run(
            argv, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            out = (done.stdout + done.stderr).strip()[-1500:]
            raise RgwStartError(f"`{' '.join(argv[:4])} …` exited {done.returncode}: {out}")
        return done.stdout.strip()

    def _retry(self, deadline: float, *argv: str) -> str:
        while True:
            try:
                return self._run(*argv, timeout=20)
            except (RgwStartError, subprocess.TimeoutExpired):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

    def _spawn(self, name: str, *argv: str) -> None:
        assert self.directory is not None
        out = (self.directory / "log" / f"{name}.out").open("wb")
        with out:
            self.procs[name] = subprocess.Popen(
                argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    def _wait(self, what: str, deadline: float, ready: object) -> None:
        assert callable(ready)
        while not ready():
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RgwStartError(
                        f"{name} exited ({proc.returncode}) while waiting for {what}"
                    )
            if time.monotonic() > deadline:
                raise RgwStartError(f"timed out after {self.timeout:.0f} s waiting for {what}")
            time.sleep(0.1)

    def _ceph_ok(self, *args: str) -> bool:
        try:
            self._run("ceph", "--connect-timeout", "5", *args, timeout=15)
        except (RgwStartError, subprocess.TimeoutExpired):
            return False
        return True

    def _osd_up(self) -> bool:
        try:
            out = self._run(
                "ceph", "--connect-timeout", "5", "osd", "stat", "-f", "json", timeout=15
            )
        except (RgwStartError, subprocess.TimeoutExpired):
            return False
        return '"num_up_osds":1' in out.replace(" ", "")

    def _s3_answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.endpoint + "/", timeout=5) as response:
                response.read()
        except urllib.error.HTTPError:
            return True  # any HTTP answer means radosgw serves
        except OSError:
            return False
        return True

    def log_tails(self) -> str:
        """The last lines of every daemon's output and log, for a failure message."""
        if self.directory is None:
            return "\n".join(self.log)
        parts = list(self.log)
        for path in sorted((self.directory / "log").glob("*")):
            with contextlib.suppress(OSError):
                lines = path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
                if lines:
                    parts.append(f"== {path.name}\n" + "\n".join(lines))
        return "\n".join(parts)


def main() -> int:
    keys = {"RGWMANUALACCESSKEY01": "rgw-manual-secret-key-000000000000000001"}
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # clean up on TERM as on Ctrl-C
    with RgwCluster(keys=keys) as cluster:
        print("READY", cluster.endpoint, *next(iter(keys.items())), flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main())
