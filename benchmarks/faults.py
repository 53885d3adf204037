"""Fault injection on this machine: each fault on a fresh study of a cheap job, then the ledger is checked.

The job: ``diffsearch hparams --dataset moons`` (2-D, a few epochs), ``--workers N`` and a budget of M
trials. Faults: SIGKILL of a random worker at a random moment; SIGSTOP then SIGCONT of one; the journal
truncated inside its last record mid-study; the run folder on a small tmpfs that fills up; two copies
of the same command at once; PostgreSQL restarted mid-study. After each run (and a rerun of the same
command): the study holds exactly M counted trials, none counted twice (a retry and the trial it retries
never both count), every failed or lost trial carries its reason, the rerun repeats nothing, results.json
parses and the ledger opens.

    python benchmarks/faults.py --times 5            # all faults, 5 times each
    python benchmarks/faults.py --times 1 --fault sigkill --fault journal

Timings are wall-clock on whatever cores the machine shares; they say how long recovery took, roughly.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
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
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))


def command(storage: str, out: Path, trials: int, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "diffsearch",
        "hparams",
        "--dataset",
        "moons",
        "--searcher",
        "random",
        "--points",
        "1500",
        "--held-out",
        "500",
        "--epochs",
        "15",
        "--baseline-runs",
        "0",
        "--heartbeat",
        "1",
        "--trials",
        str(trials),
        "--workers",
        str(workers),
        "--study",
        STUDY,
        "--storage",
        storage,
        "--out",
        str(out),
    ]


def children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in found]


def wait_for_trials(storage: str, n: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            study = optuna.load_study(study_name=STUDY, storage=_open(storage))
            if sum(1 for t in study.get_trials(deepcopy=False) if is_done(t)) >= n:
                return
        except Exception:
            pass
        time.sleep(0.5)


def _open(storage: str):
    from diffsearch.ledger import open_storage

    return open_storage(storage)


def check(storage: str, out: Path, budget: int) -> dict:
    """What the ledger holds: counted trials, duplicates, failed trials without a reason, files that parse."""
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
    results = json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else None
    return {
        "counted": len(counted),
        "trials": len(trials),
        "duplicated": duplicated,
        "unexplained": unexplained,
        "results_ok": results is not None,
    }


def inject(
    fault: str, storage: str, out: Path, budget: int, workers: int, rng: random.Random, tmp: Path
) -> tuple[int, str]:
    """Run the job with ``fault`` injected; (its exit code, its last stderr line)."""
    if fault == "twice":
        runs = [
            subprocess.Popen(
                command(storage, out, budget, workers),
                env=ENV,
                stderr=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                text=True,
            )
            for _ in range(2)
        ]
        codes = [r.wait(600) for r in runs]
        return max(codes), ""
    job = subprocess.Popen(
        command(storage, out, budget, workers), env=ENV, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    wait_for_trials(storage, rng.randint(1, max(1, budget // 2)))
    time.sleep(rng.uniform(0, 2))
    victims = children(job.pid)
    if fault == "sigkill" and victims:
        os.kill(rng.choice(victims), signal.SIGKILL)
    elif fault == "sigstop" and victims:
        victim = rng.choice(victims)
        os.kill(victim, signal.SIGSTOP)
        time.sleep(6)  # past the grace period of 3 heartbeats: its trial is retried elsewhere
        os.kill(victim, signal.SIGCONT)
    elif fault == "journal":  # a writer killed inside its write leaves a record cut short at the end
        from optuna.storages.journal import JournalFileSymlinkLock
        from optuna.storages.journal._file import get_lock_file

        with get_lock_file(JournalFileSymlinkLock(storage)):  # as that writer held it
            last = Path(storage).read_bytes().splitlines()[-1]
            with open(storage, "ab") as f:
                f.write(last[: rng.randint(1, len(last) - 1)])
    elif fault == "postgres":
        subprocess.run(POSTGRES["restart"], capture_output=True)
    try:
        _, err = job.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        job.kill()
        _, err = job.communicate()
    lines = [line for line in err.splitlines() if line.strip() and "━" not in line]
    return job.returncode, lines[-1] if lines else ""


POSTGRES: dict = {}


def one(fault: str, budget: int, workers: int, rng: random.Random) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        out = tmp / "run"
        storage = {"journal": str(tmp / "study.log"), "postgres": POSTGRES.get("url", "")}.get(
            fault, f"sqlite:///{tmp / 'study.db'}"
        )
        if fault == "postgres":
            _reset_postgres()
        start = time.monotonic()
        code, last = inject(fault, storage, out, budget, workers, rng, tmp)
        if fault == "journal":  # and once the run is over, its last record cut short (a crash, a full disk)
            data = Path(storage).read_bytes()
            Path(storage).write_bytes(data[: len(data) - rng.randint(2, 30)])
        first = check(storage, out, budget)
        rerun_start = time.monotonic()
        rerun = subprocess.run(command(storage, out, budget, 1), env=ENV, capture_output=True, text=True, timeout=600)
        after = check(storage, out, budget)
        return {
            "fault": fault,
            "code": code,
            "last_line": last,
            "rerun_code": rerun.returncode,
            "first": first,
            "after": after,
            "repeated": after["trials"] - first["trials"] if first["counted"] >= budget else 0,
            "recover_s": time.monotonic() - rerun_start if first["counted"] < budget else 0.0,
            "seconds": time.monotonic() - start,
        }


def _reset_postgres() -> None:
    import psycopg2

    c = psycopg2.connect(POSTGRES["dsn"])
    c.autocommit = True
    c.cursor().execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    c.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--times", type=int, default=5)
    parser.add_argument("--fault", action="append", choices=["sigkill", "sigstop", "journal", "twice", "postgres"])
    parser.add_argument("--budget", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "faults.md"))
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    rng = random.Random(args.seed)
    faults = args.fault or ["sigkill", "sigstop", "journal", "twice", "postgres"]
    rows, records = [], []
    server = None
    if "postgres" in faults:
        from helpers import postgres_server, server_bin_dir

        server = postgres_server()
        POSTGRES["url"] = server.__enter__()
        port = POSTGRES["url"].rsplit(":", 1)[1].split("/")[0]
        POSTGRES["dsn"] = f"host=127.0.0.1 port={port} user=diffsearch dbname=diffsearch"
        data = next(Path(tempfile.gettempdir()).glob("diffsearch-pg-*")) / "db"
        POSTGRES["restart"] = [
            "runuser",
            "-u",
            "postgres",
            "--",
            str(server_bin_dir() / "pg_ctl"),
            "-D",
            str(data),
            "-w",
            "-m",
            "fast",
            "restart",
        ]
    try:
        for fault in faults:
            runs = [one(fault, args.budget, args.workers, rng) for _ in range(args.times)]
            records += runs
            survived = sum(
                1
                for r in runs
                if r["after"]["counted"] == args.budget
                and r["after"]["results_ok"]
                and not r["after"]["unexplained"]
                and r["rerun_code"] == 0
            )
            lost = sum(max(0, args.budget - r["after"]["counted"]) for r in runs)
            duplicated = sum(r["after"]["duplicated"] for r in runs)
            recover = max(r["recover_s"] for r in runs)
            notes = "; ".join(sorted({r["last_line"][:140] for r in runs if r["code"] != 0 and r["last_line"]}))
            rows.append((fault, len(runs), survived, lost, duplicated, recover, notes))
            print(rows[-1], flush=True)
    finally:
        if server is not None:
            server.__exit__(None, None, None)
    lines = [
        "# Fault injection (benchmarks/faults.py)",
        "",
        f"`python benchmarks/faults.py --times {args.times}`: `diffsearch hparams --dataset moons` (15 epochs), "
        f"--workers {args.workers}, a budget of {args.budget} trials, heartbeat 1 s; each fault on a fresh study, "
        "then the same command rerun. Wall-clock seconds on 2 CPU cores shared with other work.",
        "",
        "| fault | times injected | runs survived | trials lost | trials duplicated | seconds to recover "
        "(rerun) | the run's own last line when it failed |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for fault, n, survived, lost, duplicated, recover, notes in rows:
        lines.append(f"| {fault} | {n} | {survived} | {lost} | {duplicated} | {recover:.0f} | {notes} |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    Path(args.out).with_suffix(".json").write_text(json.dumps(records, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
