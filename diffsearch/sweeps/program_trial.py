"""One trial of ``diffsearch sweep``: the program runs with the trial's values on its command line.

Each trial has its own folder, ``<out>/trials/<number>`` (``${trial_dir}`` in the command and in parameter
values; the trial's ``trial_dir`` attr). Its stdout is read as it comes (a report per JSON line,
``report_lines.py``) and copied to ``stdout.log`` there; its stderr goes to ``stderr.log`` beside it. The
TensorBoard event files and the wandb run the program writes (``metric_sources.py``) are read while it
runs too; a program that uses ``wandb`` gets the trial's values in ``wandb.config``, as under W&B's agent.
Each report goes to ``trial.report``; when the pruner says so, the program is stopped (SIGTERM to its process group, SIGKILL
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
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO

import optuna

from diffsearch.errors import TrialFailed
from diffsearch.ledger.interrupt import stop_point
from diffsearch.sweeps.macros import expand_command, expand_values
from diffsearch.sweeps.metric_sources import MetricSource, file_sources, uses_wandb, wandb_environment
from diffsearch.sweeps.report_lines import Report, check_finite, read_report
from diffsearch.sweeps.schema import Sweep
from diffsearch.sweeps.warm_interpreter import ForkedProcess, WarmInterpreter

GRACE_SECONDS = 3.0  # between SIGTERM and SIGKILL: time to save a checkpoint, not to finish an epoch
POLL_SECONDS = 0.2  # how often a silent program is checked for Ctrl-C and its timeout
FILE_POLL_SECONDS = 0.5  # how often the files of TensorBoard and wandb are read for new reports
NO_METRIC_VALUE = 0.0  # a grid sweep without a metric: each trial completes with this constant, unranked

NEVER_REPORTED = "never_reported"  # fail_kind values, for the end-of-run summary
EXIT, TIMEOUT, NOT_FINITE, BAD_REPORT = "exit", "timeout", "not_finite", "bad_report"


def command_line(sweep: Sweep, params: dict[str, Any], trial_dir: str | Path = "") -> list[str]:
    """The sweep's command with its macros expanded (``macros.py``: W&B's and ``${trial_dir}``)."""
    return expand_command(sweep, params, str(trial_dir))


class ProgramTrial:
    """Evaluates an Optuna trial by running the sweep's program; the value is the metric's last report.

    Use it in a ``with`` block: with the sweep's ``preload``, the block holds the warm interpreter its
    trials are forked from (``warm_interpreter``).
    """

    def __init__(self, sweep: Sweep, out: Path, timeout: float | None = None, cuda_visible_devices: str | None = None):
        self.sweep, self.out, self.timeout, self.cuda = sweep, Path(out), timeout, cuda_visible_devices
        self.warm: WarmInterpreter | None = None

    def __enter__(self) -> "ProgramTrial":
        if self.sweep.preload:
            self.out.mkdir(parents=True, exist_ok=True)
            self.warm = WarmInterpreter(
                self.sweep.preload, self.sweep.program, self.out / f"warm-interpreter-{os.getpid()}.log", stop_point
            )
        return self

    def __exit__(self, *exc) -> None:
        if self.warm is not None:
            self.warm.close()
            self.warm = None

    def __call__(self, trial: optuna.Trial) -> float:
        folder = self.out / "trials" / str(trial.number)  # the trial's own folder: ${trial_dir}, its logs
        folder.mkdir(parents=True, exist_ok=True)
        params = expand_values(self.sweep.space.suggest(trial), str(folder))
        argv = command_line(self.sweep, params, folder)
        trial.set_user_attr("arguments", params)  # what the program got (constants and rounding included)
        trial.set_user_attr("command", shlex.join(argv))
        trial.set_user_attr("trial_dir", str(folder))
        trial.set_user_attr("stdout_log", str(folder / "stdout.log"))
        trial.set_user_attr("stderr_log", str(folder / "stderr.log"))
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "DIFFSEARCH_TRIAL": str(trial.number),
            "DIFFSEARCH_TRIAL_DIR": str(folder),
            "DIFFSEARCH_PARAMS": json.dumps(params),
        }
        if uses_wandb(self.sweep.source):  # a script written for W&B sweeps gets its values in wandb.config
            env.update(wandb_environment(folder, params, os.environ))
        if self.cuda is not None:
            env["CUDA_VISIBLE_DEVICES"] = self.cuda
            trial.set_user_attr("cuda_visible_devices", self.cuda)
        sources = (
            []
            if self.sweep.metric is None
            else file_sources(self.sweep.source, self.sweep.source_path, folder, self.sweep.metric)
        )
        run = _ProgramRun(
            argv, env, folder, self.sweep.metric, self.timeout, trial, self.warm, self.sweep.source, sources
        )
        started = time.monotonic()

        def ended() -> None:
            trial.set_user_attr("seconds", round(time.monotonic() - started, 3))
            if run.source is not None:
                trial.set_user_attr("metric_source", run.source)  # where the metric came from

        try:
            last = run.run()
        except ProgramFailed as exc:
            trial.set_user_attr("fail_reason", str(exc))
            trial.set_user_attr("fail_kind", exc.kind)
            ended()
            raise
        except optuna.TrialPruned:
            ended()
            raise
        ended()
        if last is None:  # a grid without a metric: the program ran to its end, nothing to rank it by
            trial.set_user_attr("no_metric", True)
            return NO_METRIC_VALUE
        trial.set_user_attr("last_report", last.line)
        return last.value


class ProgramFailed(TrialFailed):
    """A failed program trial and its ``fail_kind`` (why, in one word: exit, timeout, never_reported...)."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind = kind


_failed = ProgramFailed


class _ProgramRun:
    """One process: started, followed line by line, stopped; ``run`` returns its last report.

    Reports come from its stdout (JSON lines) and from the files of ``sources`` (TensorBoard, wandb), polled
    while it runs. With ``source: auto`` the first place that reports the metric is the trial's source and
    the others are not read for it any more (a script logging to TensorBoard and wandb at once reports each
    value twice).
    """

    def __init__(
        self,
        argv: list[str],
        env: dict[str, str],
        folder: Path,
        metric: str | None,
        timeout: float | None,
        trial: optuna.Trial,
        warm: WarmInterpreter | None = None,
        source: str = "auto",
        sources: list[MetricSource] | None = None,
    ):
        self.argv, self.env, self.folder, self.metric, self.timeout, self.trial, self.warm = (
            argv,
            env,
            folder,
            metric,
            timeout,
            trial,
            warm,
        )
        self.source = None if source == "auto" else source  # where the metric comes from, once known
        self.reads_stdout = metric is not None and source in ("auto", "stdout")
        self.sources = list(sources or [])
        self.reports = 0
        self.last: Report | None = None
        self.last_step: int | None = None
        self.next_poll = 0.0

    def run(self) -> Report | None:
        self.deadline = None if self.timeout is None else time.monotonic() + self.timeout
        with open(self.folder / "stdout.log", "wb") as stdout_log, open(self.folder / "stderr.log", "wb") as stderr_log:
            process, stdout = self._start(stderr_log)
            try:
                self._follow(stdout, stdout_log)
                code = self._wait(process)
                self._poll_files(force=True)  # what the program wrote last (wandb writes at its finish)
            finally:
                _stop(process)  # pruned, failed, timed out or Ctrl-C: nothing is left running
                stdout.close()
        if code != 0:
            raise _failed(EXIT, f"{_exit_text(code)}: {_last_line(self.folder / 'stderr.log')}")
        if self.last is None and self.metric is not None:
            raise _failed(NEVER_REPORTED, self._never_reported())
        return self.last

    def _never_reported(self) -> str:
        """Why no value: where each source looked and what it found there."""
        looked = [f"{source.looked()}" for source in self.sources]
        if self.reads_stdout:
            looked.insert(
                0,
                f'no JSON line on stdout holds it (such as {{"step": 1, "{self.metric}": 0.5}}, '
                "what diffsearch.report prints)",
            )
        return f"metric {self.metric!r} was never reported: " + "; ".join(looked)

    def _start(self, stderr_log: BinaryIO) -> tuple[subprocess.Popen | ForkedProcess, BinaryIO]:
        """The program's process and its stdout: a new process, or a fork of the warm interpreter."""
        if self.warm is not None:  # the command is [env] interpreter program args (schema checks)
            argv = self.argv[self.argv.index(sys.executable) :]
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
            process = subprocess.Popen(
                self.argv,
                stdout=subprocess.PIPE,
                stderr=stderr_log,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
            )
        except OSError as exc:
            raise _failed(EXIT, f"cannot start {self.argv[0]}: {exc.strerror or exc}") from None
        return process, process.stdout

    def _follow(self, stdout: BinaryIO, log: BinaryIO) -> None:
        """Read stdout until it closes: log it, report each metric line, poll the files, stop when pruned."""
        fd = stdout.fileno()
        pending = b""
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while True:
                stop_point()  # Ctrl-C: the finally of ``run`` stops the program
                self._check_deadline()
                self._poll_files()
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
        if not self.reads_stdout or self.source not in (None, "stdout"):
            return
        try:
            report = read_report(raw.decode("utf-8", errors="replace"), self.metric)
        except TrialFailed as exc:
            raise _failed(BAD_REPORT, str(exc)) from None
        if report is not None:
            self._report(report, "stdout")

    def _poll_files(self, force: bool = False) -> None:
        """New reports in the sources' files, at most every FILE_POLL_SECONDS (and once more at the end)."""
        now = time.monotonic()
        if not self.sources or (not force and now < self.next_poll):
            return
        self.next_poll = now + FILE_POLL_SECONDS
        for source in self.sources:
            if self.source not in (None, source.name):
                continue
            try:
                reports = source.poll()
            except TrialFailed as exc:
                raise _failed(BAD_REPORT, str(exc)) from None
            except OSError:
                continue  # a file replaced or removed as it was read: read again at the next poll
            for report in reports:
                self._report(report, source.name)

    def _report(self, report: Report, source: str) -> None:
        """A report of the metric: the trial's value so far, checked, given to the pruner."""
        self.source = source
        self.reports += 1
        step = report.step if report.step is not None else self.reports
        try:
            check_finite(report, self.metric, step)
        except TrialFailed as exc:
            raise _failed(NOT_FINITE, str(exc)) from None
        self.last = report
        if self.last_step is not None and step <= self.last_step:
            return  # a step already reported (logged twice, or a writer restarted): the value counts, not the step
        self.last_step = step
        self.trial.report(report.value, step)
        if self.trial.should_prune():
            self.trial.set_user_attr("pruned_at_step", step)
            raise optuna.TrialPruned(f"pruned at step {step} with {self.metric} {report.value:.6g}")

    def _wait(self, process: subprocess.Popen | ForkedProcess) -> int:
        """The exit code, once the program ends (it may run on after closing its stdout)."""
        while True:
            stop_point()
            self._check_deadline()
            self._poll_files()
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
    return lines[-1] if len(lines[-1]) <= limit else lines[-1][: limit - 3] + "..."
