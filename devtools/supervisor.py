"""Opt-in supervision: restart a crashed process with exponential backoff, as an orchestrator
would, and log every restart. Deliberate stops and kills (Proc.wanted = False) are left alone."""

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from devtools.procs import Proc, exit_reason


@dataclass
class Backoff:
    """0.5 s doubling to 10 s; a process that stayed up reset_after seconds starts over."""

    initial: float = 0.5
    maximum: float = 10.0
    reset_after: float = 30.0
    attempt: int = 0

    def next_delay(self, uptime: float) -> float:
        if uptime >= self.reset_after:
            self.attempt = 0
        self.attempt += 1
        return min(self.initial * 2.0 ** (self.attempt - 1), self.maximum)


@dataclass
class _Pending:
    due: float
    delay: float


class Supervisor:
    def __init__(
        self,
        procs: Callable[[], list[Proc]],
        log_path: Path,
        echo: bool = False,
        interval: float = 0.2,
        backoff: Callable[[], Backoff] = Backoff,
    ) -> None:
        self.procs, self.log_path, self.echo, self.interval = procs, log_path, echo, interval
        self._backoff = backoff
        self._state: dict[str, Backoff] = {}
        self._pending: dict[str, _Pending] = {}
        self._stop = threading.Event()
        self._paused = False
        self._busy = threading.Lock()
        self._thread: threading.Thread | None = None

    def log(self, msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} [supervisor] {msg}"
        with open(self.log_path, "a") as f:
            f.write(line + "\n")
        if self.echo:
            print(line, file=sys.stderr, flush=True)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="supervisor", daemon=True)
        self._thread.start()

    def pause(self) -> None:
        """Returns only when no restart can happen any more. The thread lives on until stop():
        the children it restarted get SIGTERM when it exits (PR_SET_PDEATHSIG is per thread),
        which would break the orderly stop."""
        with self._busy:
            self._paused = True

    def stop(self) -> None:
        self.pause()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with self._busy:
                for p in self.procs() if not self._paused else []:
                    try:
                        self.check(p, time.monotonic())
                    except Exception as e:  # keep supervising the others
                        self.log(f"{p.name}: restart failed: {e!r}")

    def check(self, p: Proc, now: float) -> None:
        # Never wait on a Proc a stop/kill/start holds: it is being handled deliberately.
        if not p.lock.acquire(blocking=False):
            return
        try:
            if not p.wanted or p.alive or p.popen is None:
                self._pending.pop(p.name, None)
                return
            pending = self._pending.get(p.name)
            if pending is None:
                b = self._state.setdefault(p.name, self._backoff())
                uptime = now - p.started_at
                delay = b.next_delay(uptime)
                self._pending[p.name] = _Pending(now + delay, delay)
                self.log(
                    f"{p.name} (pid {p.pid}) died: {exit_reason(p.popen.returncode)} after "
                    f"{uptime:.1f}s up; restart attempt {b.attempt} in {delay:.1f}s "
                    f"(log {p.log_path})"
                )
            elif now >= pending.due:
                del self._pending[p.name]
                p.start()
                attempt = self._state[p.name].attempt
                self.log(f"{p.name} restarted: pid {p.pid}, attempt {attempt}")
        finally:
            p.lock.release()
