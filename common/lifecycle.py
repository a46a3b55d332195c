"""One lifecycle for every worker, and the one runner that drives it.

A ``Service`` has ``start()`` (connect, prepare), ``run()`` (the main loop; returns when asked
to stop, or on its own in burst mode once its input is drained), ``request_stop()`` (sync, safe
from a signal handler: stop taking new work) and an idempotent ``stop()`` (finish, flush,
close). It is an async context manager: ``async with svc: await svc.run()``.

``worker_main`` is every ``python -m <stage>``'s ``main()``: it reads the stage's settings (an
invalid one: one line naming the variable, exit code 2) and hands the service to
``run_service``. ``run_service`` installs uvloop, configures
logging, starts the metrics/health server, puts SIGTERM/SIGINT handlers on the loop and then
applies the shutdown order: stop reading → finish the in-flight batch (and ack it) → flush →
close, all within ``GRACE_SECONDS``. Past the grace, the run task is cancelled (entries not
acked stay pending and are redelivered elsewhere) and the exit code is 1. A graceful stop exits 0.

Once the service has started, ``run_service`` tunes the process's garbage collector
(``tune_gc(GC_GEN0)``): a worker allocates a few short-lived objects per tick, bar or event,
and Python's default threshold (a collection every 700 allocations) runs dozens of
collections a second in a busy one. ``tests/bench/bench_detectors.py`` and
``bench_signals.py`` measure the time spent in them with and without the tuning.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import gc
import signal
import sys
from collections.abc import Callable
from types import TracebackType
from typing import Protocol, Self, TypeVar

import uvloop

from common.errors import ConfigError
from common.logging import configure_logging, get_logger
from common.metrics import MetricsServer, Readiness
from common.settings import (
    CommonSettings,
    bind_error,
    config_error_line,
    exit_on_config_error,
)

__all__ = ["Service", "run_service", "serve", "tune_gc", "worker_main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2


class Service(abc.ABC):
    """Base of every long-running worker. Subclasses implement ``run`` and usually ``close``."""

    name: str = "service"

    def __init__(self, *, burst: bool = False, readiness: Readiness | None = None) -> None:
        self.burst = burst
        self.readiness = readiness if readiness is not None else Readiness()
        self._stop_requested = asyncio.Event()
        self._started = False
        self._stopped = False

    # --- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        """Connect and prepare; override and call ``await super().start()``."""
        self._started = True

    @abc.abstractmethod
    async def run(self) -> None:
        """The main loop: return once ``stopping`` is set (or the input is drained in burst)."""

    def request_stop(self) -> None:
        """Stop taking new work (sync and idempotent: fine from a signal handler)."""
        self.readiness.reset()
        self._stop_requested.set()

    @property
    def stopping(self) -> bool:
        return self._stop_requested.is_set()

    async def wait_stopping(self, seconds: float | None = None) -> bool:
        """Sleep until a stop is requested (True) or ``seconds`` pass (False)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_requested.wait(), seconds)
        return self.stopping

    async def flush(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Write out anything buffered (called once by ``stop`` before ``close``)."""

    async def close(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Release connections and other resources (called once by ``stop``)."""

    async def stop(self) -> None:
        """Request a stop, then flush and close; every later call returns at once."""
        self.request_stop()
        if self._stopped:
            return
        self._stopped = True
        try:
            await self.flush()
        finally:
            await self.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


ServiceSource = Service | Callable[[], Service]


async def _start_metrics(service: Service, settings: CommonSettings) -> MetricsServer:
    server = MetricsServer(
        service.readiness, host=settings.metrics_host, port=settings.metrics_port
    )
    try:
        await server.start()
    except OSError as e:
        raise bind_error(
            "METRICS_HOST", "METRICS_PORT", settings.metrics_host, settings.metrics_port, e
        ) from e
    return server


async def _drain(
    service: Service, run_task: asyncio.Task[None], grace: float, forced: asyncio.Event
) -> bool:
    """Once a stop is requested, let the run finish its in-flight batch within ``grace``
    seconds (a second signal cuts it short). False when it had to be cancelled."""
    stop_wait = asyncio.ensure_future(service.wait_stopping())
    try:
        await asyncio.wait({run_task, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop_wait.cancel()
    if run_task.done():
        return True
    force = asyncio.ensure_future(forced.wait())
    try:
        await asyncio.wait({run_task, force}, timeout=grace, return_when=asyncio.FIRST_COMPLETED)
    finally:
        force.cancel()
    if run_task.done():
        return True
    get_logger("lifecycle").error(
        "stop_forced" if forced.is_set() else "grace_expired", grace_seconds=grace
    )
    run_task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await run_task
    return False


def tune_gc(gen0: int) -> None:
    """Collect the youngest generation every ``gen0`` allocations instead of every 700, and
    freeze the objects alive now out of every later collection (0: leave Python's defaults).

    Call it once start-up is done: the modules, settings, connections and compiled scripts
    then live as long as the process and are never scanned again. Fewer young collections
    also promote fewer short-lived objects into the older generations.
    """
    if gen0 > 0:
        gc.set_threshold(gen0, 20, 100)
        gc.freeze()


async def serve(
    source: ServiceSource,
    settings: CommonSettings,
    *,
    install_signals: bool = True,
    metrics: bool = True,
    gc_tuning: bool = False,
) -> int:
    """Run one service to completion under the shutdown order; returns the exit code.

    The first SIGTERM/SIGINT requests a graceful stop; a second one cancels the in-flight
    work at once (its entries stay pending and are redelivered) and exits 1. ``gc_tuning``:
    ``tune_gc(settings.gc_gen0)`` once the service has started (the process runner's choice;
    services run inside a test leave the test process's collector alone).
    """
    log = get_logger("lifecycle")
    service = source if isinstance(source, Service) else source()
    loop = asyncio.get_running_loop()
    server = await _start_metrics(service, settings) if metrics and settings.metrics_port else None
    forced = asyncio.Event()

    def on_signal(sig: signal.Signals) -> None:
        if service.stopping:
            log.warning("second_signal_stopping_now", signal=sig.name)
            forced.set()
            return
        log.debug("stop_requested", signal=sig.name, grace_seconds=settings.grace_seconds)
        service.request_stop()

    handled = (signal.SIGTERM, signal.SIGINT)
    if install_signals:
        for sig in handled:
            loop.add_signal_handler(sig, on_signal, sig)
    code = EXIT_OK
    try:
        await service.start()
        if gc_tuning:
            tune_gc(settings.gc_gen0)
        if server is not None:  # said once started: a setting the start refuses is one line
            log.debug("metrics_listening", host=settings.metrics_host, port=server.port)
        # One INFO line per start; the (redacted) settings only at DEBUG: they are 700
        # characters per process and hide the output that matters.
        log.info("service_started", service=service.name, metrics_port=settings.metrics_port)
        log.debug("settings", service=service.name, settings=settings.redacted())
        run_task = asyncio.create_task(service.run(), name=f"{service.name}.run")
        drained = await _drain(service, run_task, settings.grace_seconds, forced)
        if not drained or run_task.cancelled():
            code = EXIT_FAILED
        elif (exc := run_task.exception()) is not None:
            log.error("service_failed", error=repr(exc), exc_info=exc)
            code = EXIT_FAILED
    except ConfigError as err:
        print(config_error_line(err), file=sys.stderr, flush=True)
        code = EXIT_CONFIG
    except Exception as exc:  # a failed start: log it with its traceback, exit 1
        log.error("service_failed", error=repr(exc), exc_info=exc)
        code = EXIT_FAILED
    finally:
        try:
            await asyncio.wait_for(service.stop(), max(settings.grace_seconds, 1.0))
        except TimeoutError:
            log.error("close_timed_out")
            code = code or EXIT_FAILED
        if server is not None:
            await server.close()
        if install_signals:
            for sig in handled:
                loop.remove_signal_handler(sig)
    if code != EXIT_CONFIG:  # an invalid setting is one line, and that line is printed
        # A clean stop is DEBUG (the runner of `make run` sums them up in one line); else ERROR.
        stopped = log.debug if code == EXIT_OK else log.error
        stopped("service_stopped", service=service.name, exit_code=code)
    return code


def run_service(
    source: ServiceSource, settings: CommonSettings, *, configure_logs: bool = True
) -> int:
    """Run ``source`` (a service, or a factory called inside the loop) on uvloop; exit code.

    0: stopped gracefully (signal, or burst input drained); 1: failed or the grace expired;
    2: an invalid setting (one line on stderr). The process's garbage collector is tuned to
    ``settings.gc_gen0`` once the service has started.
    """
    if configure_logs:
        configure_logging(settings)
    try:
        return uvloop.run(serve(source, settings, gc_tuning=True))
    except ConfigError as err:
        print(config_error_line(err), file=sys.stderr, flush=True)
        return EXIT_CONFIG


class StageSettings(Protocol):
    """A stage's settings: whatever it reads, plus the shared ``CommonSettings``."""

    @property
    def common(self) -> CommonSettings: ...


S = TypeVar("S", bound=StageSettings)


def worker_main(settings: Callable[[], S], service: Callable[[S], Service]) -> int:
    """The ``main()`` of a ``python -m <stage>``: read the settings with ``settings()`` (an
    invalid one prints one line naming the variable and exits 2), then ``run_service`` the
    ``service(settings)`` it builds (inside the loop) and return its exit code::

        def main() -> int:
            return worker_main(SinkSettings.from_env, lambda s: SinkService(s))
    """
    with exit_on_config_error():
        read = settings()
    return run_service(lambda: service(read), read.common)
