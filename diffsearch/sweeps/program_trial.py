"""One trial of ``diffsearch sweep``: the program runs with the trial's values on its command line.

Its stdout is read as it comes (a report per JSON line, ``report_lines.py``) and copied to
``<out>/trials/<number>/stdout.log``; its stderr goes to ``stderr.log`` beside it. Each report goes to
``trial.report``; when the pruner says so, the program is stopped (SIGTERM to its process group, SIGKILL
after a grace period) and the trial ends pruned. A non-zero exit, a timeout, a metric never reported or
not finite fails the trial with a ``fail_reason`` (and ``fail_kind``), and the study goes on.

The program runs in a session of its own, so stopping it also stops whatever it started (a launcher's
workers) and the terminal's Ctrl-C reaches only diffsearch, which stops the program itself.
"""

from __future__ import annotations

import json
import os
import selectors
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO

import optuna

from diffsearch.errors import TrialFailed
from diffsearch.ledger.interrupt import stop_point
from diffsearch.sweeps.report_lines import Report, check_finite, read_report
from diffsearch.sweeps.schema import Sweep
from diffsearch.sweeps.warm_interpreter import ForkedProcess, WarmInterpreter

GRACE_SECONDS = 3.0   # between SIGTERM and SIGKILL: time to save a checkpoint, not to finish an epoch
POLL_SECONDS = 0.2    # how often a silent program is checked for Ctrl-C and its timeout

NEVER_REPORTED = "never_reported"   # fail_kind values, for the end-of-run summary
EXIT, TIMEOUT, NOT_FINITE, BAD_REPORT = "exit", "timeout", "not_finite", "bad_report"


def command_line(sweep: Sweep, params: dict[str, Any]) -> list[str]:
    """The sweep's command with W&B's macros expanded; ``${args}`` is ``--name=value`` per active parameter."""
    expanded = {
        # W&B's ${env} is /usr/bin/env; where there is none (Windows) the command runs the same without it
        "${env}": [shutil.which("env")] if shutil.which("env") else [],
        "${interpreter}": [sys.executable],  # the Python diffsearch runs on: its virtual environment
        "${program}": [sweep.program],
        "${args}": [f"--{name}={value}" for name, value in params.items()],
        "${args_no_hyphens}": [f"{name}={value}" for name, value in params.items()],
        "${args_json}": [json.dumps(params)],
    }
    return [part for word in sweep.command for part in expanded.get(word, [word])]


class ProgramTrial:
    """Evaluates an Optuna trial by running the sweep's program; the value is the metric's last report.

    Use it in a ``with`` block: with the sweep's ``preload``, the block holds the warm interpreter its
    trials are forked from (``warm_interpreter``).
    """

    def __init__(self, sweep: Sweep, out: Path, timeout: float | None = None,
                 cuda_visible_devices: str | None = None):
        self.sweep, self.out, self.timeout, self.cuda = sweep, Path(out), timeout, cuda_visible_devices
        self.warm: WarmInterpreter | None = None

    def __enter__(self) -> "ProgramTrial":
        if self.sweep.preload:
            self.out.mkdir(parents=True, exist_ok=True)
            self.warm = WarmInterpreter(self.sweep.preload, self.sweep.program,
                                        self.out / f"warm-interpreter-{os.getpid()}.log", stop_point)
        return self

    def __exit__(self, *exc) -> None:
        if self.warm is not None:
            self.warm.close()
            self.warm = None

    def __call__(self, trial: optuna.Trial) -> float:
        params = self.sweep.space.suggest(trial)
        argv = command_line(self.sweep, params)
        folder = self.out / "trials" / str(trial.number)
        folder.mkdir(parents=True, exist_ok=True)
        trial.set_user_attr("arguments", params)  # what the program got (constants and rounding included)
        trial.set_user_attr("command", shlex.join(argv))
        trial.set_user_attr("stdout_log", str(folder / "stdout.log"))
        trial.set_user_attr("stderr_log", str(folder / "stderr.log"))
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "DIFFSEARCH_TRIAL": str(trial.number),
               "DIFFSEARCH_TRIAL_DIR": str(folder), "DIFFSEARCH_PARAMS": json.dumps(params)}
        if self.cuda is not None:
            env["CUDA_VISIBLE_DEVICES"] = self.cuda
            trial.set_user_attr("cuda_visible_devices", self.cuda)
        started = time.monotonic()
        try:
            last = _ProgramRun(argv, env, folder, self.sweep.metric, self.timeout, trial, self.warm).run()
        except ProgramFailed as exc:
            trial.set_user_attr("fail_reason", str(exc))
            trial.set_user_attr("fail_kind", exc.kind)
            trial.set_user_attr("seconds", round(time.monotonic() - started, 3))
            raise
        except optuna.TrialPruned:
            trial.set_user_attr("seconds", round(time.monotonic() - started, 3))
            raise
        trial.set_user_attr("seconds", round(time.monotonic() - started, 3))
        trial.set_user_attr("last_report", last.line)
        return last.value


class ProgramFailed(TrialFailed):
    """A failed program trial and its ``fail_kind`` (why, in one word: exit, timeout, never_reported...)."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind = kind


_failed = ProgramFailed


class _ProgramRun:
    """One process: started, followed line by line, stopped; ``run`` returns its last report."""

    def __init__(self, argv: list[str], env: dict[str, str], folder: Path, metric: str,
                 timeout: float | None, trial: optuna.Trial, warm: WarmInterpreter | None = None):
        self.argv, self.env, self.folder, self.metric, self.timeout, self.trial, self.warm = \
            argv, env, folder, metric, timeout, trial, warm
        self.reports = 0
        self.last: Report | None = None

    def run(self) -> Report:
        self.deadline = None if self.timeout is None else time.monotonic() + self.timeout
        with open(self.folder / "stdout.log", "wb") as stdout_log, \
                open(self.folder / "stderr.log", "wb") as stderr_log:
            process, stdout = self._start(stderr_log)
            try:
                self._follow(stdout, stdout_log)
                code = self._wait(process)
            finally:
                _stop(process)  # pruned, failed, timed out or Ctrl-C: nothing is left running
                stdout.close()
        if code != 0:
            raise _failed(EXIT, f"{_exit_text(code)}: {_last_line(self.folder / 'stderr.log')}")
        if self.last is None:
            raise _failed(NEVER_REPORTED, f"metric {self.metric!r} was never reported (print a JSON line such as "
                          f'{{"step": 1, "{self.metric}": 0.5}} or call diffsearch.report)')
        return self.last

    def _start(self, stderr_log: BinaryIO) -> tuple[subprocess.Popen | ForkedProcess, BinaryIO]:
        """The program's process and its stdout: a new process, or a fork of the warm interpreter."""
        if self.warm is not None:  # the command is [env] interpreter program args (schema checks)
            argv = self.argv[self.argv.index(sys.executable):]
            read, write = os.pipe()
            try:
                process = self.warm.fork(argv, self.env, write, stderr_log.fileno())
            except OSError as exc:
                os.close(read)
                raise _failed(EXIT, f"cannot start {argv[1]}: {exc}") from None
            finally:
                os.close(write)
            return process, open(read, "rb", buffering=0)
        try:
            process = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=stderr_log,
                                       stdin=subprocess.DEVNULL, env=self.env, start_new_session=True)
        except OSError as exc:
            raise _failed(EXIT, f"cannot start {self.argv[0]}: {exc.strerror or exc}") from None
        return process, process.stdout

    def _follow(self, stdout: BinaryIO, log: BinaryIO) -> None:
        """Read stdout until it closes: log it, report each metric line, stop when pruned."""
        fd = stdout.fileno()
        pending = b""
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while True:
                stop_point()  # Ctrl-C: the finally of ``run`` stops the program
                self._check_deadline()
                if not selector.select(self._poll()):
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                log.write(chunk)
                log.flush()
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    self._line(line)
        if pending:
            self._line(pending)

    def _line(self, raw: bytes) -> None:
        try:
            report = read_report(raw.decode("utf-8", errors="replace"), self.metric)
        except TrialFailed as exc:
            raise _failed(BAD_REPORT, str(exc)) from None
        if report is None:
            return
        self.reports += 1
        step = report.step if report.step is not None else self.reports
        try:
            check_finite(report, self.metric, step)
        except TrialFailed as exc:
            raise _failed(NOT_FINITE, str(exc)) from None
        self.last = report
        self.trial.report(report.value, step)
        if self.trial.should_prune():
            self.trial.set_user_attr("pruned_at_step", step)
            raise optuna.TrialPruned(f"pruned at step {step} with {self.metric} {report.value:.6g}")

    def _wait(self, process: subprocess.Popen | ForkedProcess) -> int:
        """The exit code, once the program ends (it may run on after closing its stdout)."""
        while True:
            stop_point()
            self._check_deadline()
            try:
                return process.wait(timeout=self._poll())
            except subprocess.TimeoutExpired:
                continue

    def _poll(self) -> float:
        if self.deadline is None:
            return POLL_SECONDS
        return max(0.0, min(POLL_SECONDS, self.deadline - time.monotonic()))

    def _check_deadline(self) -> None:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise _failed(TIMEOUT, f"timed out after {self.timeout:g} s (--trial-timeout)")


def _stop(process: subprocess.Popen | ForkedProcess) -> None:
    """SIGTERM to the program's process group, SIGKILL after the grace period; nothing if all have ended."""
    for sig, wait in ((signal.SIGTERM, GRACE_SECONDS), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)  # the group outlives its leader while any member runs
        except (ProcessLookupError, PermissionError):
            break
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        if sig == signal.SIGTERM:
            # the leader left; whatever else of its group remains gets the SIGKILL without waiting
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            break


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _last_line(path: Path, limit: int = 200) -> str:
    """The last non-empty line of the program's stderr (its error, usually), shortened."""
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        handle.seek(max(0, handle.tell() - 8192))
        lines = [line.strip() for line in handle.read().decode("utf-8", errors="replace").splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return "nothing on stderr"
    return lines[-1] if len(lines[-1]) <= limit else lines[-1][:limit - 3] + "..."
