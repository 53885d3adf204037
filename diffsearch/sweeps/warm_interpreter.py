"""Trials forked from a warm interpreter: a sweep's ``preload`` is imported once per worker, not per trial.

A Python training program spends seconds importing torch and diffusers before its first step (on 2 shared
cores, 14-30 s for ``from diffusers import DDPMPipeline``), and a sweep pays that on every trial. With
``preload: [torch, diffusers]`` in the sweep file, each worker starts one Python interpreter that imports
those modules (and calls each ``module:function`` listed, e.g. to load a network into a cache its trials
share), and each trial is a fork of that interpreter which runs the program as ``python program.py --args``
would: ``__name__ == "__main__"``, ``sys.argv``, the program's folder first on ``sys.path``, the trial's
environment and working directory, random generators seeded afresh from the OS (Python's, NumPy's,
torch's). The trial is still a process of its own, in a session of its own: its output, exit code,
timeout, pruning and Ctrl-C are handled exactly as for a program started from scratch.

Why the warm interpreter computes on one thread: a fork after an OpenMP parallel region hangs the child at
its first parallel operation (the OpenMP runtime keeps no fork handler), so torch's thread pool is never
started before the fork; each trial restores torch's thread count (``OMP_NUM_THREADS`` or torch's default).

Only commands that run ``${interpreter} ${program}`` (a Python file) can be forked; ``schema`` refuses
``preload`` with any other command.

The protocol (one trial at a time per worker) over a Unix socket pair: the interpreter answers
``{"ready": true}`` or ``{"error": "..."}`` once; for each ``{"argv", "env", "cwd"}`` sent with the trial's
stdout and stderr descriptors it forks, answers ``{"pid": n}`` once the child leads its own session, and
``{"status": code}`` (``subprocess``'s returncode convention) when the child ends. It exits when the socket
closes.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

MAX_MESSAGE = 1 << 20  # a trial's argv and environment, as JSON


def _send(sock: socket.socket, message: dict[str, Any], fds: Sequence[int] = ()) -> None:
    data = json.dumps(message).encode()
    if fds:
        socket.send_fds(sock, [data], list(fds))
    else:
        sock.sendall(data)


def _receive(sock: socket.socket, max_fds: int = 0) -> tuple[dict[str, Any] | None, list[int]]:
    """One message (None when the other side has closed) and the descriptors sent with it."""
    data, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, max_fds)
    return (json.loads(data) if data else None), fds


class WarmInterpreter:
    """The diffsearch side: starts the interpreter, forks trials from it, stops it (``close`` or ``with``)."""

    def __init__(
        self, preload: Sequence[str], program: str, log_path: Path, stop_point: Callable[[], None] = lambda: None
    ):
        self.preload = list(preload)
        self._sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with open(log_path, "ab") as log:  # the preloaded modules' warnings and tracebacks
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "diffsearch.sweeps.warm_interpreter",
                    str(theirs.fileno()),
                    json.dumps(self.preload),
                    os.path.dirname(os.path.abspath(program)),
                ],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )  # the terminal's Ctrl-C is diffsearch's to handle
        theirs.close()
        started = time.monotonic()
        reply = self._reply(None, stop_point)
        if reply is None or "error" in reply:
            self.close()
            from diffsearch.errors import UsageError

            why = reply["error"] if reply else f"it ended at start-up (see {log_path})"
            raise UsageError(f"preload: {why}")
        self.start_seconds = time.monotonic() - started

    def fork(
        self, argv: Sequence[str], env: dict[str, str], stdout: int, stderr: int, cwd: str | None = None
    ) -> "ForkedProcess":
        """Run ``argv`` (interpreter, program, arguments) as a fork; ``stdout``/``stderr``: descriptors."""
        _send(self._sock, {"argv": list(argv), "env": env, "cwd": cwd or os.getcwd()}, [stdout, stderr])
        reply = self._reply(None)
        if reply is None or "pid" not in reply:
            raise OSError(f"the warm interpreter did not start the program: {reply}")
        return ForkedProcess(reply["pid"], self)

    def _reply(self, timeout: float | None, stop_point: Callable[[], None] = lambda: None) -> dict | None:
        """The next message; ``subprocess.TimeoutExpired`` after ``timeout`` seconds (None: wait, polling
        ``stop_point`` for Ctrl-C)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            stop_point()
            wait = 0.2 if deadline is None else max(0.0, min(0.2, deadline - time.monotonic()))
            self._sock.settimeout(wait)
            try:
                message, _ = _receive(self._sock)
                return message
            except (socket.timeout, BlockingIOError):
                if deadline is not None and time.monotonic() >= deadline:
                    raise subprocess.TimeoutExpired("warm interpreter", timeout) from None
            except (ConnectionResetError, OSError):
                return None

    def close(self) -> None:
        """Close the socket (the interpreter exits when it sees that) and reap it."""
        self._sock.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> "WarmInterpreter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ForkedProcess:
    """What ``program_trial`` needs of a ``subprocess.Popen`` for a forked trial: pid, wait, returncode."""

    def __init__(self, pid: int, warm: WarmInterpreter):
        self.pid, self._warm, self.returncode = pid, warm, None

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            reply = self._warm._reply(timeout)
            # the interpreter itself died: the trial's fate is unknown, so it counts as killed
            self.returncode = reply["status"] if reply and "status" in reply else -9
        return self.returncode

    def poll(self) -> int | None:
        try:
            return self.wait(0)
        except subprocess.TimeoutExpired:
            return None


# ---- the interpreter's side ----------------------------------------------------------------------------


def _load(preload: Sequence[str]) -> str | None:
    """Import each module and call each ``module:function``; the first failure as one line, else None."""
    import importlib

    for entry in preload:
        module_name, _, function = entry.partition(":")
        try:
            module = importlib.import_module(module_name)
            if "torch" in sys.modules:
                _one_thread()
            if function:
                getattr(module, function)()
            if "torch" in sys.modules and sys.modules["torch"].cuda.is_initialized():
                # a forked child cannot use CUDA its parent started: every trial would fail
                return f"{entry} started CUDA, which forked trials cannot use: load onto the CPU in preload"
        except BaseException as exc:  # noqa: BLE001 - reported to the user, who fixes the sweep file
            import traceback

            traceback.print_exc()
            return f"{entry}: {type(exc).__name__}: {exc}".splitlines()[0]
    return None


_THREADS: list[int] = []  # torch's thread count before the warm interpreter set it to one


def _one_thread() -> None:
    import torch

    if not _THREADS:
        _THREADS.append(torch.get_num_threads())
        torch.set_num_threads(1)


def _run_trial(request: dict[str, Any], stdout: int, stderr: int) -> None:
    """In the forked child: become ``python program.py args`` and exit with its code. Never returns."""
    import atexit
    import io
    import random
    import runpy
    import signal
    import traceback

    code = 1
    try:
        devnull = os.open(os.devnull, os.O_RDONLY)
        for fd, target in ((devnull, 0), (stdout, 1), (stderr, 2)):
            os.dup2(fd, target)
            os.close(fd)
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), write_through=True)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), write_through=True, errors="backslashreplace")
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        random.seed()  # a fresh interpreter seeds Python's, NumPy's and torch's generators from the OS
        if "numpy" in sys.modules:
            sys.modules["numpy"].random.seed()
        if "torch" in sys.modules:
            sys.modules["torch"].seed()
        if _THREADS:
            import torch

            threads = os.environ.get("OMP_NUM_THREADS", "")
            torch.set_num_threads(int(threads) if threads.isdigit() and int(threads) > 0 else _THREADS[0])
        program = request["argv"][1]
        sys.argv = list(request["argv"][1:])
        code = 0
        try:
            runpy.run_path(program, run_name="__main__")
        except SystemExit as exc:
            code = _exit_code(exc.code)
        except BaseException:  # noqa: BLE001 - as python itself: the traceback on stderr, exit 1
            traceback.print_exc()
            code = 1
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def _exit_code(code: Any) -> int:
    """``sys.exit(x)``'s exit status, as the interpreter computes it."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _fork(request: dict[str, Any], fds: list[int], sock: socket.socket) -> int:
    """Fork the trial; returns its pid once it leads a session of its own (so killpg reaches it)."""
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        sock.close()
        os.close(ready_r)
        os.setsid()
        os.close(ready_w)  # the parent's read sees end of file: the session exists
        _run_trial(request, *fds)
    os.close(ready_w)
    os.read(ready_r, 1)
    os.close(ready_r)
    return pid


def serve(sock: socket.socket, preload: Sequence[str], program_folder: str) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # diffsearch stops it by closing the socket
    sys.path[0] = program_folder  # as for `python program.py`: modules beside the program can be preloaded
    error = _load(preload)
    _send(sock, {"error": error} if error else {"ready": True})
    if error:
        return
    while True:
        request, fds = _receive(sock, max_fds=2)
        if request is None:
            return
        pid = _fork(request, fds, sock)
        for fd in fds:
            os.close(fd)
        _send(sock, {"pid": pid})
        _, status = os.waitpid(pid, 0)
        _send(sock, {"status": os.waitstatus_to_exitcode(status)})


if __name__ == "__main__":
    serve(socket.socket(fileno=int(sys.argv[1])), json.loads(sys.argv[2]), sys.argv[3])
