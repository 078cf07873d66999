"""Run moto's S3 server on 127.0.0.1 in its own process, for the benchmarks.

Prints ``PORT <n>`` once it listens, then serves until its stdin closes (the benchmark
holds the other end of the pipe, so the server ends with it) or ``--max-seconds`` pass.
"""

from __future__ import annotations

import argparse
import select
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-seconds", type=float, default=300.0)
    args = parser.parse_args()

    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        _host, port = server.get_host_and_port()
        print(f"PORT {port}", flush=True)
        deadline = time.monotonic() + args.max_seconds
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([sys.stdin], [], [], min(left, 1.0))
            if ready and not sys.stdin.buffer.read1(4096):
                break  # EOF: the benchmark is done (or gone)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
