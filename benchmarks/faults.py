"""Fault injection on this machine: each fault on a fresh study of a cheap job, then the ledger is checked.

The job: ``diffsearch hparams --dataset moons`` (2-D, a few epochs), ``--workers N`` and a budget of M
trials, heartbeat 1 s. Faults, each at a random moment of the study:

- ``sigkill``: SIGKILL of a process running a trial (the job's own process or a worker beside it);
- ``sigkill-worker``: SIGKILL of a worker beside the job (not the job's own process), mid-trial;
- ``sigstop``: SIGSTOP of one for 6 s (past 3 heartbeats), then SIGCONT;
- ``journal``: a record cut short appended to the journal file mid-study (a writer killed inside its write),
  and the last record cut once the run is over;
- ``twice``: two copies of the same command at once;
- ``pg-restart``: the PostgreSQL server restarted (``pg_ctl restart -m fast``) mid-study;
- ``pg-kill``: every connection of the study's database killed by the server (``pg_terminate_backend``);
- ``disk``: the run folder (with its SQLite ledger) on a real 24 MiB tmpfs that a filler file fills up;
- ``hang``: one trial made to hang (it sleeps, with no safe point) under ``--trial-timeout 4``.

After each run, and after a rerun of the same command: the study holds exactly M counted trials, none
counted twice (a retry and the trial it retries never both count), every failed or lost trial carries its
reason, no trial is left WAITING or RUNNING, the rerun repeats nothing, results.json parses and the
ledger opens.

    python benchmarks/faults.py --times 5                       # every fault, 5 times each
    python benchmarks/faults.py --times 5 --fault sigkill       # one group; the table keeps the others

Each invocation replaces the rows of the faults it ran in ``faults.json`` and writes the table of all rows
to ``faults.md``. The PostgreSQL faults start a throw-away server (tests/helpers.py, as the tests do);
``disk`` mounts a tmpfs (root). Timings are wall-clock on whatever cores the machine shares.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from diffsearch.ledger.studies import is_done  # noqa: E402

STUDY = "faults"
FAULTS = ["sigkill", "sigkill-worker", "sigstop", "journal", "twice", "pg-restart", "pg-kill", "disk", "hang"]
DESCRIBED = {
    "sigkill": "SIGKILL of a process running a trial, at a random moment (each time it was the job's own process)",
    "sigkill-worker": "SIGKILL of a worker process started beside the job (`--workers 2`), mid-trial",
    "sigstop": "SIGSTOP of a process running a trial for 6 s (past 3 heartbeats), then SIGCONT",
    "journal": "journal file: a record cut short appended mid-study (a writer killed inside its write), "
    "and the last record cut after the run",
    "twice": "two copies of the same command at once",
    "pg-restart": "PostgreSQL restarted mid-study (`pg_ctl restart -m fast`)",
    "pg-kill": "PostgreSQL connections killed mid-study (`pg_terminate_backend`)",
    "disk": "run folder (with its SQLite ledger) on a real 24 MiB tmpfs filled up mid-study",
    "hang": "a trial that hangs (sleeps with no safe point) under `--trial-timeout 4`",
}
TIMEOUT = 4
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))

# ``hang``: loaded by every Python process of the run (PYTHONPATH); the K-th trial evaluated hangs
_HANG_HOOK = """
import os
if os.environ.get("FAULT_HANG_DIR"):
    import time
    import diffsearch.jobs.training_trials as training_trials

    _evaluate = training_trials.evaluate_trial

    def evaluate_trial(trial, *args, **kwargs):
        folder, k = os.environ["FAULT_HANG_DIR"], int(os.environ["FAULT_HANG_AT"])
        n = 0
        while True:  # claim the next call number, across processes
            try:
                os.close(os.open(os.path.join(folder, str(n)), os.O_CREAT | os.O_EXCL))
                break
            except FileExistsError:
                n += 1
        if n == k:
            time.sleep(3600)  # no safe point: the time limit's alarm must stop it
        return _evaluate(trial, *args, **kwargs)

    training_trials.evaluate_trial = evaluate_trial
"""


EPOCHS = [10]  # --epochs of the job (a longer trial gives a worker beside the job the time to start one)


def command(storage: str, out: Path, trials: int, workers: int, fault: str) -> list[str]:
    limit = ["--trial-timeout", str(TIMEOUT)] if fault == "hang" else []
    return [
        sys.executable, "-m", "diffsearch", "hparams", "--dataset", "moons", "--searcher", "random",
        "--points", "800", "--held-out", "200", "--epochs", str(EPOCHS[0]), "--baseline-runs", "0", "--heartbeat", "1",
        "--trials", str(trials), "--workers", str(workers), "--study", STUDY, "--storage", storage,
        "--out", str(out), *limit,
    ]  # fmt: skip


_STORAGES: dict[str, optuna.storages.BaseStorage] = {}


def _open(storage: str):
    from diffsearch.ledger import open_storage

    if storage not in _STORAGES:  # one connection pool per URL
        _STORAGES[storage] = open_storage(storage)
    return _STORAGES[storage]


def _study(storage: str) -> optuna.Study | None:
    try:
        return optuna.load_study(study_name=STUDY, storage=_open(storage))
    except Exception:
        return None


def wait_for_trials(storage: str, n: int, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        study = _study(storage)
        if study is not None and sum(1 for t in study.get_trials(deepcopy=False) if is_done(t)) >= n:
            return
        time.sleep(0.3)


def running_pids(storage: str) -> list[int]:
    """Processes of this machine running a trial now (with its params drawn)."""
    study, host = _study(storage), socket.gethostname()
    pids = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)) if study else []:
        worker_host, _, pid = t.user_attrs.get("worker", "").rpartition(":")
        if worker_host == host and pid.isdigit() and t.params:
            pids.append(int(pid))
    return pids


def check(storage: str, out: Path, budget: int) -> dict:
    """What the ledger holds: counted trials, duplicates, failed trials without a reason, files that parse."""
    _close(storage)  # open it afresh: the ledger must open after the fault
    study = optuna.load_study(study_name=STUDY, storage=_open(storage))
    trials = study.get_trials(deepcopy=False)
    counted = [t for t in trials if is_done(t)]
    retried = {t.user_attrs.get("retry_of") for t in counted if t.user_attrs.get("retry_of") is not None}
    duplicated = sum(1 for t in counted if t.number in retried)  # an original and its retry both counted
    duplicated += max(0, len(counted) - budget)
    unexplained = [
        t.number
        for t in trials
        if t.state == optuna.trial.TrialState.FAIL
        and not any(k in t.user_attrs for k in ("fail_reason", "lost_reason", "surplus"))
    ]
    left = [t.number for t in trials if t.state in (optuna.trial.TrialState.WAITING, optuna.trial.TrialState.RUNNING)]
    try:
        results_ok = isinstance(json.loads((out / "results.json").read_text()), dict)
    except (OSError, ValueError):
        results_ok = False
    return {
        "counted": len(counted),
        "trials": len(trials),
        "duplicated": duplicated,
        "unexplained": unexplained,
        "left": left,
        "lost": sum(1 for t in trials if "lost_reason" in t.user_attrs),
        "timed_out": sum(1 for t in trials if "--trial-timeout" in t.user_attrs.get("fail_reason", "")),
        "results_ok": results_ok,
    }


def _wait_gone(pids: list[int], timeout: float = 180) -> None:
    """Wait for processes left behind by a killed job (its workers finish the budget, then leave)."""
    deadline = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            if Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
                break
            time.sleep(0.3)


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in found]


def _fill(folder: Path) -> None:
    with open(folder / "filler", "wb") as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * (1 << 20))
            f.flush()


def inject(fault: str, storage: str, out: Path, budget: int, workers: int, rng: random.Random, env: dict) -> dict:
    """Run the job with ``fault`` injected: its exit code(s), last stderr line, whether the fault landed, when."""
    argv = command(storage, out, budget, workers, fault)
    if fault == "twice":
        runs = [
            subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
            for _ in range(2)
        ]
        errs = [r.communicate(timeout=900)[1] for r in runs]
        return {"code": max(r.returncode for r in runs), "err": "\n".join(errs), "injected": True, "at": None}
    job = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    injected, at, left_behind = fault == "hang", None, []
    if fault != "hang":
        wait_for_trials(storage, rng.randint(1, max(1, budget - 2)))
        time.sleep(rng.uniform(0, 1.5))
        deadline = time.monotonic() + 60
        while not injected and time.monotonic() < deadline and job.poll() is None:
            at = time.monotonic()
            if fault in ("sigkill", "sigkill-worker", "sigstop"):
                pids = [p for p in running_pids(storage) if fault != "sigkill-worker" or p != job.pid]
                if pids:
                    victim = rng.choice(pids)
                    left_behind = [p for p in _children(job.pid) if p != victim]
                    if fault.startswith("sigkill"):
                        os.kill(victim, signal.SIGKILL)
                    else:
                        os.kill(victim, signal.SIGSTOP)
                        time.sleep(6)  # past the grace period of 3 heartbeats: its trial is retried elsewhere
                        os.kill(victim, signal.SIGCONT)
                    injected = True
            elif fault == "journal":  # a writer killed inside its write leaves a record cut short at the end
                from optuna.storages.journal import JournalFileSymlinkLock

                from diffsearch.ledger.optuna_private import journal_lock

                with journal_lock(JournalFileSymlinkLock(storage)):  # as that writer held it
                    last = Path(storage).read_bytes().splitlines()[-1]
                    with open(storage, "ab") as f:
                        f.write(last[: rng.randint(1, len(last) - 1)])
                injected = True
            elif fault == "pg-restart":
                from helpers import pg_ctl

                pg_ctl(POSTGRES["url"], "restart")
                injected = True
            elif fault == "pg-kill":
                from helpers import kill_connections

                injected = kill_connections(POSTGRES["port"]) > 0
            elif fault == "disk":
                _fill(out)
                injected = True
            if not injected:
                time.sleep(0.1)
    try:
        _, err = job.communicate(timeout=900)
    except subprocess.TimeoutExpired:
        job.kill()
        _, err = job.communicate()
    _wait_gone(left_behind)
    return {"code": job.returncode, "err": err, "injected": injected, "at": at}


POSTGRES: dict = {}


def one(fault: str, budget: int, workers: int, rng: random.Random) -> dict:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        out, env = tmp / "run", dict(ENV)
        storage = {"journal": str(tmp / "study.log"), "pg-restart": POSTGRES.get("url"), "pg-kill": POSTGRES.get("url")}
        storage_url = storage.get(fault) or f"sqlite:///{out / 'study.db'}"
        if fault.startswith("pg-"):
            _reset_postgres()
        mounted = False
        if fault == "disk":
            out.mkdir()
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(out)], check=True)
            mounted = True
        if fault == "hang":
            hook = tmp / "hook"
            hook.mkdir()
            (hook / "sitecustomize.py").write_text(_HANG_HOOK)
            (tmp / "calls").mkdir()
            env.update(
                PYTHONPATH=f"{hook}:{ROOT}", FAULT_HANG_DIR=str(tmp / "calls"), FAULT_HANG_AT=str(rng.randrange(budget))
            )
        try:
            start = time.monotonic()
            ran = inject(fault, storage_url, out, budget, workers, rng, env)
            ended = time.monotonic()
            if fault == "journal":  # and once the run is over, its last record cut short (a crash, a full disk)
                data = Path(storage_url).read_bytes()
                Path(storage_url).write_bytes(data[: len(data) - rng.randint(2, 30)])
            if fault == "disk":
                (out / "filler").unlink(missing_ok=True)  # the user frees some space
            first = check(storage_url, out, budget)
            rerun_start = time.monotonic()
            rerun_env = {k: v for k, v in env.items() if not k.startswith("FAULT_HANG")}
            rerun = subprocess.run(
                command(storage_url, out, budget, 1, fault), env=rerun_env, capture_output=True, text=True, timeout=900
            )
            rerun_end = time.monotonic()
            after = check(storage_url, out, budget)
        finally:
            if mounted:
                _close(storage_url)  # this process's own connection to the ledger on the tmpfs
                if subprocess.run(["umount", str(out)], capture_output=True).returncode != 0:
                    subprocess.run(["umount", "-l", str(out)], check=False)
        lines = [line for line in ran["err"].splitlines() if line.strip() and "━" not in line]
        finished_by_run = first["counted"] >= budget and not first["left"]
        since = ran["at"] if ran["at"] is not None else start
        return {
            "fault": fault,
            "budget": budget,
            "epochs": EPOCHS[0],
            "injected": ran["injected"] if fault != "hang" else after["timed_out"] >= 1,  # the hang was caught
            "code": ran["code"],
            "last_line": lines[-1] if lines else "",
            "traceback": "Traceback" in ran["err"] or "Traceback" in rerun.stderr,
            "rerun_code": rerun.returncode,
            "rerun_last_line": (rerun.stderr.strip().splitlines() or [""])[-1],
            "first": first,
            "after": after,
            "repeated": after["trials"] - first["trials"] if finished_by_run else 0,
            "recover_s": (ended if finished_by_run else rerun_end) - since,
            "rerun_s": rerun_end - rerun_start,
            "seconds": rerun_end - start,
        }


def _close(storage: str) -> None:
    import gc

    opened = _STORAGES.pop(storage, None)
    engine = getattr(opened, "engine", None)
    if engine is not None:
        engine.dispose()
    del opened
    gc.collect()


def _reset_postgres() -> None:
    import psycopg2

    _STORAGES.clear()
    c = psycopg2.connect(POSTGRES["dsn"])
    c.autocommit = True
    c.cursor().execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    c.close()


def survived(r: dict, budget: int) -> bool:
    a = r["after"]
    return (
        a["counted"] == budget
        and a["duplicated"] == 0
        and not a["unexplained"]
        and not a["left"]
        and a["results_ok"]
        and r["rerun_code"] == 0
        and r["repeated"] == 0
        and not r["traceback"]
    )


def table(records: list[dict], budget: int) -> list[str]:
    rows = [
        "| fault | times injected | runs survived | trials lost | trials duplicated | seconds to recover "
        "(median, max) | what the run said |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for fault in FAULTS:
        runs = [r for r in records if r["fault"] == fault and r["injected"]]
        if not runs:
            continue
        lost = sum(max(0, r.get("budget", budget) - r["after"]["counted"]) for r in runs)
        duplicated = sum(r["after"]["duplicated"] for r in runs)
        recover = sorted(r["recover_s"] for r in runs)
        said = sorted({r["last_line"][:160] for r in runs if r["code"] != 0 and r["last_line"]})
        codes = sorted({r["code"] for r in runs})
        note = f"exit {', '.join(map(str, codes))}" + (": " + " / ".join(said) if said else "")
        rows.append(
            f"| {DESCRIBED[fault]} | {len(runs)} | {sum(survived(r, r.get('budget', budget)) for r in runs)} | {lost} | {duplicated} | "
            f"{recover[len(recover) // 2]:.0f}, {recover[-1]:.0f} | {note.replace('|', '/')} |"
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--times", type=int, default=5)
    parser.add_argument("--fault", action="append", choices=FAULTS)
    parser.add_argument("--budget", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "faults.md"))
    parser.add_argument("--table", action="store_true", help="only write the table of the runs saved so far")
    parser.add_argument("--more", action="store_true", help="keep the saved runs of these faults, add to them")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    faults = [] if args.table else args.fault or FAULTS
    EPOCHS[0] = args.epochs
    saved = Path(args.out).with_suffix(".json")
    records = [
        r for r in (json.loads(saved.read_text()) if saved.exists() else []) if args.more or r["fault"] not in faults
    ]
    server = None
    if any(f.startswith("pg-") for f in faults):
        from helpers import postgres_server

        server = postgres_server()
        POSTGRES["url"] = server.__enter__()
        port = POSTGRES["url"].rsplit(":", 1)[1].split("/")[0]
        POSTGRES["port"], POSTGRES["dsn"] = port, f"host=127.0.0.1 port={port} user=diffsearch dbname=diffsearch"
    try:
        for fault in faults:
            rng = random.Random(f"{args.seed}-{fault}")
            landed = attempts = 0
            while landed < args.times and attempts < 3 * args.times:  # a fault can miss (the run ended first)
                record = one(fault, args.budget, args.workers, rng)
                landed, attempts = landed + record["injected"], attempts + 1
                records.append(record)
                print(json.dumps({k: record[k] for k in ("fault", "injected", "code", "rerun_code", "recover_s")}),
                      survived(record, args.budget), record["after"], flush=True)  # fmt: skip
                saved.write_text(json.dumps(records, indent=1))
    finally:
        if server is not None:
            server.__exit__(None, None, None)
    lines = [
        "# Fault injection (benchmarks/faults.py)",
        "",
        f"`python benchmarks/faults.py --times {args.times} --fault ...` (one group of faults at a time; a run "
        "whose fault missed, the run having ended first, is not counted and another is made): "
        f"`diffsearch hparams --dataset moons` (800 points, 10 epochs), `--workers {args.workers}`, a budget of "
        f"{args.budget} trials, heartbeat 1 s; each fault on a fresh study, then the same command rerun. Seconds "
        "to recover: from the fault to a study that holds its budget (the run itself, or the rerun when the run "
        "stopped). Wall-clock on 2 CPU cores shared with other work.",
        "",
        *table(records, args.budget),
    ]
    Path(args.out).write_text("\n".join(lines) + "\n")
    saved.write_text(json.dumps(records, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
