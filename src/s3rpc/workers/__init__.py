"""``rpc.workers`` > 1: a supervisor and N worker processes serving one listening socket.

:mod:`~s3rpc.workers.supervisor` is the supervisor process; :mod:`~s3rpc.workers.link` the
protocol between it and each worker (both halves, registrations included).

The supervisor (the process started as ``s3rpc serve``) binds rpc.listen once — for a unix
socket it creates the file, sets its mode and removes it at exit; workers never touch it — and
forks the workers before any event loop or S3 client exists. Each worker runs the normal
:class:`~s3rpc.app.App` on the inherited socket; the kernel gives each new connection to one of
them, and a connection stays with its worker. The supervisor runs no event loop: a selector over
the workers' control sockets and a signal wakeup pipe.

Run-time buckets (s3.RegisterBucket / s3.UnregisterBucket) are one set for all workers. The
worker taking the call validates it (register policy, S3 client creation) and asks the
supervisor, which holds the set and orders every change: it refuses a name already registered
(or no longer registered) and ``s3.register.max_registered``, else relays the change to every
running worker, the asking one included, in the same order. The call is answered once every
worker applied it — an unregistration once every worker also finished that bucket's calls in
flight. So a call sent after the answer, on any connection, finds the bucket (or no longer
finds it). A worker started later (a restart after a crash) receives the current set when it
is forked and adds it before it accepts connections.

Signals: SIGTERM or SIGINT → ``STOPPING=1``, every worker is asked to drain (its normal drain
within ``s3.shutdown_timeout``), exit 0 once all exited cleanly; a second signal kills them and
exits 1. A worker that dies otherwise is restarted (log lines ``worker_exited``,
``worker_started``), after a growing pause when it keeps dying young. systemd: ``READY=1`` once
every worker listens, ``STOPPING=1``, from the supervisor only (NOTIFY_SOCKET is removed from
the workers' environment).

SIGHUP: the supervisor re-reads the config file; a broken one is logged (naming the key) and
nothing else happens. Otherwise it keeps the new config for workers started later and for
``max_registered``, and forwards SIGHUP to every worker, each of which reloads as a single
process does (:meth:`s3rpc.app.App.reload`); ``RELOADING=1``/``READY=1`` come from the
supervisor. Watchdog (``$WATCHDOG_USEC``): the supervisor pings from its selector loop; each
worker reports from its event loop every half period, and a worker silent for a whole period
is killed and restarted — one stuck worker does not make systemd restart the service.

Per-worker state stays per worker: the cached tails of upload sessions (the sessions live in
S3; another worker re-fetches where one stands), metrics and readiness — worker i serves
``metrics.address`` and ``status.address`` at port + i.
"""

from __future__ import annotations

from s3rpc.workers.supervisor import supervise

__all__ = ["supervise"]
