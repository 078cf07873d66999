"""systemd notification (``sd_notify``) over ``$NOTIFY_SOCKET``, without libsystemd.

Readiness (``READY=1``, ``STOPPING=1``), reloads (``RELOADING=1`` with ``MONOTONIC_USEC``, the
``Type=notify-reload`` protocol) and the watchdog (``WATCHDOG=1`` every half ``$WATCHDOG_USEC``).
"""

from __future__ import annotations

import os
import socket
import time


def notify(state: str) -> bool:
    """Send ``state`` (e.g. ``READY=1``) if running under systemd; True when sent."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError:
        return False
    return True


def reloading() -> bool:
    """``RELOADING=1`` with the monotonic time, as ``Type=notify-reload`` expects."""
    now = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify(f"RELOADING=1\nMONOTONIC_USEC={now}")


def watchdog_interval() -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half of ``$WATCHDOG_USEC``), or None when systemd
    set no watchdog for this process (``$WATCHDOG_PID`` names another one)."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2_000_000
