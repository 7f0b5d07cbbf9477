"""Child processes in their own process groups, torn down for sure, plus bounded readiness polls."""

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

_PR_SET_PDEATHSIG = 1
# Loaded once here: the supervisor forks from a thread, and a dlopen between fork and exec
# could deadlock on a lock another thread held.
_LIBC = ctypes.CDLL("libc.so.6", use_errno=True)


def _die_with_parent() -> None:
    # Runs in the child before exec: new process group (so killpg reaches everything it
    # spawns) and SIGTERM when the parent dies, so a killed test run leaves no orphans.
    # (The "parent" is the forking thread: the supervisor thread must outlive its children.)
    os.setsid()
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    last_err: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as e:  # readiness probes fail until ready
            last_err = e
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready within {timeout:.0f}s (last error: {last_err!r})")


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Proc:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], cwd: Path, log_dir: Path):
        self.name, self.argv, self.env, self.cwd = name, argv, env, cwd
        self.log_path = log_dir / f"{name}.log"
        self.popen: subprocess.Popen[bytes] | None = None
        # wanted: should be running (a supervisor restarts it only then). The lock keeps a
        # supervisor restart from racing a deliberate stop/kill/start.
        self.wanted = False
        self.started_at = 0.0
        self.starts = 0
        self.lock = threading.RLock()

    def start(self) -> "Proc":
        with self.lock:
            return self._start()

    def _start(self) -> "Proc":
        log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=self.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        log.close()
        self.wanted, self.started_at = True, time.monotonic()
        self.starts += 1
        return self

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.popen is not None and self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None

    def stop(self, grace: float = 8.0) -> None:
        stop_all([self], grace)

    def kill(self) -> None:
        """Crash it on purpose: SIGKILL, no cleanup, and no supervisor restart."""
        with self.lock:
            self.wanted = False
            self.signal(signal.SIGKILL)
            if self.popen is not None:
                self.popen.wait(timeout=5)

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def stop_all(procs: Iterable[Proc], grace: float = 8.0) -> None:
    """SIGTERM all at once, wait for all under one deadline, SIGKILL what is left: stopping N
    processes costs the slowest one's grace, not the sum."""
    procs = [p for p in procs if p.popen is not None]
    for p in procs:
        p.lock.acquire()
        p.wanted = False
    try:
        for p in procs:
            p.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for p in procs:
            assert p.popen is not None
            try:
                p.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.signal(signal.SIGKILL)
                p.popen.wait(timeout=5)
            # Anything left in the group (grandchildren) goes too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.popen.pid, signal.SIGKILL)
    finally:
        for p in procs:
            p.lock.release()


def exit_reason(code: int | None) -> str:
    if code is None:
        return "running"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"
