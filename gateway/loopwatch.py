"""Watching the event loop from outside it: lag, stalls, and a health answer that needs no loop.

Everything the gateway does runs on one event loop per process, so one call that never yields
(a busy loop, a blocking system call) stops every request of that process, its health check
included. A beat task on the loop records when it last ran; a thread checks that record. When
the loop has not run for ``stall_after`` seconds the thread logs a warning with the stack the
loop is stuck in, and the health listener (also a thread, on its own port) answers 503 until
the loop runs again, so a load balancer or an orchestrator takes the process out and restarts
it. While the loop runs, the beat measures its lag: how late a timer fires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson

log = logging.getLogger("gateway.loop")

# A timer fires this often on the loop; its lateness is the lag.
BEAT_INTERVAL = 0.1
# Lag at or above this is summarised in the log once per SUMMARY_INTERVAL.
_NOTABLE_LAG = 0.1
SUMMARY_INTERVAL = 60.0


@dataclass(frozen=True, slots=True)
class LoopState:
    """What the watch knows of the loop at one moment."""

    stalled: bool
    since_beat: float  # seconds since the loop last ran the beat
    lag: float  # lateness of the last beat, seconds
    max_lag: float  # worst lateness since the watch started, seconds
    stalls: int  # stalls seen since the watch started


class LoopWatch:
    """The beat (a task on the loop) and the watcher (a thread). ``async with`` runs both."""

    def __init__(self, stall_after: float = 1.0, *, interval: float = BEAT_INTERVAL,
                 armed: bool = True) -> None:
        self.stall_after = stall_after
        self.interval = interval
        # Unarmed, lag is measured but nothing is a stall: start-up (loading botocore's models,
        # the collector's freeze) may hold the loop before any request can be served.
        self._armed = armed
        self._last_beat = time.monotonic()
        self._lag = 0.0
        self._max_lag = 0.0
        self._stalls = 0
        self._loop_thread: int | None = None
        self._beat_task: asyncio.Task[None] | None = None
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def arm(self) -> None:
        """From now on a loop that does not run for ``stall_after`` seconds is a stall (call it
        once the app serves)."""
        self._last_beat = time.monotonic()
        self._armed = True

    def state(self) -> LoopState:
        """Safe from any thread."""
        since = time.monotonic() - self._last_beat
        stalled = self._armed and since >= self.stall_after
        return LoopState(stalled, since, self._lag, self._max_lag, self._stalls)

    async def __aenter__(self) -> LoopWatch:
        self._loop_thread = threading.get_ident()
        self._last_beat = time.monotonic()
        self._beat_task = asyncio.create_task(self._beat(), name="loop-beat")
        self._watcher = threading.Thread(target=self._watch, name="loop-watch", daemon=True)
        self._watcher.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        if self._beat_task is not None:
            self._beat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat_task
        if self._watcher is not None:
            self._watcher.join(timeout=2)

    async def _beat(self) -> None:
        summary_due = time.monotonic() + SUMMARY_INTERVAL
        window_max = 0.0
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.interval)
            now = time.monotonic()
            self._last_beat = now
            self._lag = lag = max(0.0, now - before - self.interval)
            self._max_lag = max(self._max_lag, lag)
            window_max = max(window_max, lag)
            if now >= summary_due:
                if window_max >= _NOTABLE_LAG:
                    log.info("event loop lag", extra={"max_lag_ms": round(window_max * 1000, 1)})
                window_max = 0.0
                summary_due = now + SUMMARY_INTERVAL

    def _watch(self) -> None:
        reported = False
        while not self._stop.wait(self.interval):
            since = time.monotonic() - self._last_beat
            if not self._armed:
                continue
            if since >= self.stall_after and not reported:
                reported = True
                self._stalls += 1
                log.warning(
                    "event loop blocked",
                    extra={"blocked_s": round(since, 2), "stack": self._loop_stack()},
                )
            elif since < self.stall_after and reported:
                reported = False
                log.warning("event loop running again", extra={"max_lag_ms": round(
                    self._lag * 1000, 1)})

    def _loop_stack(self) -> str:
        frame = sys._current_frames().get(self._loop_thread or -1)
        return "".join(traceback.format_stack(frame)) if frame is not None else ""


class HealthListener:
    """``GET /-/health`` on its own port, answered by a thread from the watch's state: 200 while
    the loop runs, 503 while it is stalled (when the main port could not answer at all)."""

    def __init__(self, watch: LoopWatch, host: str, port: int) -> None:
        self._watch = watch
        handler = _health_handler(watch)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="health-listener", daemon=True
        )

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def __enter__(self) -> HealthListener:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=2)


def health_body(state: LoopState) -> tuple[int, dict[str, object]]:
    """The health answer for a loop state (the main port's and the listener's)."""
    if state.stalled:
        return 503, {
            "message": "503 Service Unavailable - the event loop is stalled",
            "stalled_s": round(state.since_beat, 2),
        }
    return 200, {"status": "ok"}


def _health_handler(watch: LoopWatch) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # A probe that sends nothing must not hold a thread for long.
        timeout = 5

        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] != "/-/health":
                self._answer(404, {"error": "404 Not Found"})
                return
            self._answer(*health_body(watch.state()))

        def _answer(self, status: int, body: dict[str, object]) -> None:
            data = orjson.dumps(body)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)
            self.close_connection = True

        def log_message(self, format: str, *args: object) -> None:
            # Probes every few seconds would flood the log; stalls are logged by the watch.
            return

    return Handler
