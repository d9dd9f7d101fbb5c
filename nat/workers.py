"""``peercall relay --workers N``: N relay processes sharing the listening ports.

An I/O-layer concern, like coturn's relay threads; the TURN rules stay in the sans-I/O core,
of which each worker runs its own copy:

* The parent binds each listener (UDP, TCP, TLS) once per worker with ``SO_REUSEPORT`` and
  hands socket *i* to worker *i* (inherited across ``fork``). The kernel picks the socket of a
  datagram or connection by a hash of its 4-tuple, so one client's five-tuple always reaches
  the same worker, and that worker alone holds its allocation: no allocation state is shared.
* ``min-port..max-port`` is cut into one disjoint slice per worker, so a peer's packets to a
  relay port reach the worker that owns the allocation.
* ``user-quota`` and ``total-quota`` are counted once for all, in a
  :class:`nat.quota.SharedLedger` (shared memory under one lock), so a 486 is still a 486.

* RESERVATION-TOKENs (EVEN-PORT's R bit) are kept in a
  :class:`nat.reservations.SharedReservationBook`, so the Allocate presenting one may reach
  any worker.

The parent stops every worker when one dies (the relay exits 1 with one line saying so); a
dead worker's allocations are lost with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
from collections.abc import Callable, Coroutine
from typing import Any, TextIO

from nat.config import RelayConfig
from nat.errors import ConfigError, ServiceError
from nat.quota import SharedLedger
from nat.reservations import SharedReservationBook
from nat.service import Listener, RelayServer, RelayStats, listener_udp_socket, stream_socket

logger = logging.getLogger(__name__)

_BIND_ATTEMPTS = 20


def default_workers() -> int:
    """One worker per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def port_slices(low: int, high: int, workers: int) -> list[tuple[int, int]]:
    """``low..high`` cut into ``workers`` disjoint, nearly equal, non-empty slices."""
    span = high - low + 1
    if span < workers:
        raise ConfigError(
            f"min-port..max-port: {span} relay port(s) cannot be shared by {workers} workers"
        )
    return [
        (low + i * span // workers, low + (i + 1) * span // workers - 1) for i in range(workers)
    ]


def _strerror(exc: OSError) -> str:
    text = exc.strerror or str(exc)
    return text[:1].lower() + text[1:]


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bind_listeners(config: RelayConfig, workers: int) -> list[list[Listener]]:
    """For each worker, its own ``SO_REUSEPORT`` copy of every listener of ``config``.

    Raises :class:`ServiceError` with one line when a port cannot be bound. With
    ``listening-port 0`` one ephemeral port free for both UDP and TCP is picked first.
    """
    attempts = _BIND_ATTEMPTS if config.listening_port == 0 else 1
    for attempt in range(attempts):
        made: list[list[Listener]] = [[] for _ in range(workers)]
        try:
            port = config.listening_port
            for host in config.listening_ips:
                kinds = [
                    k for k, off in (("udp", config.no_udp), ("tcp", config.no_tcp)) if not off
                ]
                for kind in kinds:
                    port = _bind_all(made, kind, host, port)
            if config.tls_enabled:
                for host in config.listening_ips:
                    _bind_all(made, "tls", host, config.tls_listening_port)
            return made
        except ServiceError as exc:
            for listeners in made:
                for _, _, sock in listeners:
                    sock.close()
            cause = exc.__cause__
            in_use = getattr(cause, "errno", None) == errno.EADDRINUSE
            if not (in_use and attempt + 1 < attempts):
                raise
    raise AssertionError("not reached")


def _bind_all(made: list[list[Listener]], kind: str, host: str, port: int) -> int:
    for listeners in made:
        try:
            if kind == "udp":
                sock = listener_udp_socket(host, port, reuse_port=True)
            else:
                sock = stream_socket(host, port, reuse_port=True)
        except OSError as exc:
            raise ServiceError(
                f"cannot listen on {kind} {_hostport(host, port)}: {_strerror(exc)}"
            ) from exc
        listeners.append((kind, host, sock))
        port = port or sock.getsockname()[1]
    return port


def _worker_main(
    config: RelayConfig,
    listeners: list[Listener],
    ledger: SharedLedger,
    book: SharedReservationBook,
    conn: multiprocessing.connection.Connection,
    run_loop: Callable[[Coroutine[Any, Any, int]], int],
) -> None:
    """A worker process: serve until SIGTERM, then send the stats to the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    # SIGTERM stays blocked (as the parent forked us) until the loop's handler is installed in
    # _serve_worker: a stop during start-up is then a clean stop, not a death by signal.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        code = run_loop(_serve_worker(config, listeners, ledger, book, conn))
    except BaseException as exc:  # reported as one line by the parent
        with contextlib.suppress(OSError):
            conn.send(("error", str(exc) or type(exc).__name__))
        code = 1
    os._exit(code)  # no atexit/finalizers inherited from the parent


async def _serve_worker(
    config: RelayConfig,
    listeners: list[Listener],
    ledger: SharedLedger,
    book: SharedReservationBook,
    conn: multiprocessing.connection.Connection,
) -> int:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})  # a pending one sets stop now
    server = RelayServer(config, listeners=listeners, ledger=ledger, reservations=book)
    try:
        await server.start()
    except ServiceError as exc:
        conn.send(("error", str(exc)))
        return 1
    conn.send(("ready", None))
    try:
        await stop.wait()
        # Stopping now: more SIGTERMs (the rest of the process group's, the parent's
        # terminate()) could reach asyncio's handler after the loop closed its wakeup pipe,
        # which prints "Exception ignored ... Bad file descriptor" on a clean stop.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    finally:
        await server.stop()
    conn.send(("stats", server.stats()))
    return 0


@dataclasses.dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    conn: multiprocessing.connection.Connection
    stats: RelayStats | None = None


def serve_workers(
    config: RelayConfig,
    workers: int,
    out: TextIO,
    run_loop: Callable[[Coroutine[Any, Any, int]], int],
    describe: Callable[[RelayConfig], list[str]],
) -> int:
    """Run ``workers`` relay processes until SIGINT/SIGTERM; print as ``peercall relay``."""
    slices = port_slices(config.min_port, config.max_port, workers)
    per_worker = bind_listeners(config, workers)
    context = multiprocessing.get_context("fork")
    ledger = SharedLedger(config.user_quota, config.total_quota, context.Lock())
    book = SharedReservationBook(context.Lock())
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    running: list[_Worker] = []
    try:
        for (low, high), listeners in zip(slices, per_worker, strict=True):
            mine = dataclasses.replace(config, min_port=low, max_port=high)
            parent, child = context.Pipe()
            process = context.Process(
                target=_worker_main,
                args=(mine, listeners, ledger, book, child, run_loop),
                name=f"peercall-relay-worker-{len(running) + 1}",
            )
            # The child inherits the blocked SIGTERM (see _worker_main); ours, if one came
            # meanwhile, is delivered to on_signal when unblocked.
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
            try:
                process.start()
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
            child.close()
            running.append(_Worker(process, parent))
        first = [(kind, host, sock.getsockname()[1]) for kind, host, sock in per_worker[0]]
        for listeners in per_worker:  # the workers have their own copies now
            for _, _, sock in listeners:
                sock.close()
        ready, failed = _await_ready(running, lambda: stopping)
        if failed is not None:
            raise ServiceError(failed)
        if ready:  # else stopped during start-up: a clean stop, with nothing to announce
            _announce(config, first, workers, out, describe)
            failed = _wait(running, lambda: stopping)
    finally:
        for worker in running:
            if worker.process.is_alive():
                worker.process.terminate()  # SIGTERM: the worker stops its relay cleanly
        for worker in running:
            # A worker stopped during start-up may still send "ready" before its stats.
            with contextlib.suppress(EOFError, OSError):
                while worker.stats is None and worker.conn.poll(15):
                    status, detail = worker.conn.recv()
                    if status == "stats":
                        worker.stats = detail
            worker.process.join(15)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    stats = [w.stats for w in running if w.stats is not None]
    print(
        f"relay stopped: {sum(s.stun_requests for s in stats)} STUN requests, "
        f"{sum(s.relayed_packets for s in stats)} packets "
        f"({sum(s.relayed_bytes for s in stats)} bytes) relayed, "
        f"{sum(s.errors for s in stats)} errors",
        file=out,
        flush=True,
    )
    if failed is not None:
        raise ServiceError(failed)
    return 0


def _receive(worker: _Worker) -> tuple[str, Any]:
    try:
        status, detail = worker.conn.recv()
    except (EOFError, OSError):
        worker.process.join(5)  # the pipe closes just before the exit code is known
        return "exited", worker.process.exitcode
    return status, detail


def _await_ready(running: list[_Worker], stopping: Callable[[], bool]) -> tuple[bool, str | None]:
    """Wait for every worker's "ready": ``(True, None)`` when all are, ``(False, None)`` when
    asked to stop meanwhile, ``(False, reason)`` when one failed (a one-line reason).

    A worker that exits 0 before it is ready was told to stop with the rest of the process
    group (as in :func:`_wait`): a clean stop, like a stop asked of the parent.
    """
    waiting = {worker.conn: worker for worker in running}
    while waiting:
        if stopping():
            return False, None
        for conn in multiprocessing.connection.wait(list(waiting), timeout=0.2):
            worker = waiting.pop(conn)  # type: ignore[call-overload]
            status, detail = _receive(worker)
            if status == "ready":
                continue
            if status == "exited" and (detail == 0 or stopping()):
                return False, None
            if status == "exited":
                return False, f"relay worker failed to start: exited with {detail}"
            return False, f"relay worker failed to start: {detail}"
    return not stopping(), None


def _wait(running: list[_Worker], stopping: Callable[[], bool]) -> str | None:
    """Until asked to stop (None) or a worker dies (a one-line reason)."""
    sentinels = {w.process.sentinel: w for w in running}
    while not stopping():
        ready = multiprocessing.connection.wait(list(sentinels), timeout=0.2)
        for sentinel in ready:
            worker = sentinels[sentinel]  # type: ignore[index]
            if worker.process.exitcode is None:
                worker.process.join(1)
            if worker.process.exitcode == 0:
                # A worker stops cleanly only on SIGTERM: the whole process group was told to
                # stop (e.g. by `timeout` or a service manager), so stop the others too.
                return None
            return f"relay worker {worker.process.name} exited with {worker.process.exitcode}"
    return None


def _announce(
    config: RelayConfig,
    addresses: list[tuple[str, str, int]],
    workers: int,
    out: TextIO,
    describe: Callable[[RelayConfig], list[str]],
) -> None:
    for kind, host, port in addresses:
        print(f"listening on {kind} {_hostport(host, port)}", file=out)
    for kind, host, port in addresses:
        where = _hostport(host, port)
        uri = f"turns:{where}?transport=tcp" if kind == "tls" else f"turn:{where}?transport={kind}"
        print(f"uri: {uri}", file=out)
    for line in describe(config):
        print(line, file=out)
    print(
        f"{workers} relay worker processes sharing the listening ports (SO_REUSEPORT)",
        file=out,
    )
    print("relay ready (Ctrl-C to stop)", file=out, flush=True)


__all__ = ["bind_listeners", "default_workers", "port_slices", "serve_workers"]
