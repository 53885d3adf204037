"""Trials per minute for 1, 2 and 4 local workers on one study (cheap 2-D trials, or --job optimizer:
cheap update-rule trainings handed out by a random tree search through the storage).

Each worker count gets a fresh study in a fresh storage (default: a JournalStorage file, the local
multi-process storage; --storage-kind sqlite or a --postgres URL to compare). Trials per minute are
counted between the first trial's start and the last trial's end, so process start-up is excluded;
the wall time with start-up is reported beside it. Ratios to 1 worker come from runs in this one script.

    python benchmarks/worker_throughput.py                      # writes results/worker_throughput.md
    python benchmarks/worker_throughput.py --workers 1 2 4 8 --trials 80
    python benchmarks/worker_throughput.py --job optimizer   # writes results/worker_throughput_optimizer.md
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import optuna
import torch

from diffsearch.jobs.hparams import HparamsOptions, run_hparams
from diffsearch.jobs.optimizer import OptimizerOptions, run_optimizer
from diffsearch.ledger import done_trials, open_storage

RESULTS = Path(__file__).parent / "results"


def measure(workers: int, args, scratch: Path) -> dict:
    if args.postgres:
        storage = args.postgres
    elif args.storage_kind == "sqlite":
        storage = f"sqlite:///{scratch / f'w{workers}.db'}"
    else:
        storage = str(scratch / f"w{workers}.log")
    study = f"throughput-{workers}-{int(time.time())}"
    start = time.perf_counter()
    if args.job == "optimizer":
        run_optimizer(
            OptimizerOptions(
                searcher="random",
                budget=args.trials,
                scale=args.scale,
                baselines=(),
                top=1,
                workers=workers,
                storage=storage,
                study=study,
                out=str(scratch / study),
                seed=workers,
            )
        )
        return _row(workers, storage, study, time.perf_counter() - start)
    options = HparamsOptions(
        dataset="moons",
        searcher="random",
        trials=args.trials,
        epochs=args.epochs,
        n_points=2000,
        held_out=500,
        baseline_runs=0,
        jobs=workers,
        storage=storage,
        study=study,
        out=str(scratch / study),
        seed=workers,
    )
    run_hparams(options)
    return _row(workers, storage, study, time.perf_counter() - start)


def _row(workers: int, storage: str, study: str, wall: float) -> dict:
    trials = done_trials(optuna.load_study(study_name=study, storage=open_storage(storage, heartbeat=None)))
    first = min(t.datetime_start for t in trials)
    last = max(t.datetime_complete for t in trials)
    busy = (last - first).total_seconds()
    return {
        "workers": workers,
        "trials": len(trials),
        "seconds": busy,
        "wall_seconds": wall,
        "trials_per_minute": 60 * len(trials) / busy,
        "mean_trial_seconds": sum(t.duration.total_seconds() for t in trials) / len(trials),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=40, help="epochs per cheap trial")
    parser.add_argument("--storage-kind", choices=("journal", "sqlite"), default="journal")
    parser.add_argument("--postgres", help="a PostgreSQL URL to use instead of a local file")
    parser.add_argument("--job", choices=("hparams", "optimizer"), default="hparams")
    parser.add_argument("--scale", type=float, default=0.1, help="optimizer: training steps scale per rule")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    # one thread per worker in every row (the 1-worker row runs in this process), so rows differ only in
    # the number of workers; cheap trials gain nothing from more threads
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for workers in args.workers:
            rows.append(measure(workers, args, Path(scratch)))
            print(json.dumps(rows[-1]))
    base = rows[0]["trials_per_minute"]
    kind = "postgresql" if args.postgres else args.storage_kind
    load = os.getloadavg()[0]
    what = (
        f"update rules found by random tree search, each trained on toy2d-moons at --scale {args.scale} "
        "(its lr grid included), handed to the workers through the storage"
        if args.job == "optimizer"
        else f"moons, 2,000 points, {args.epochs} epochs, random search"
    )
    lines = [
        f"# Worker throughput, {args.job} job ({kind} storage, {os.cpu_count()} CPU cores, "
        f"load average {load:.1f} at the end)",
        "",
        f"Cheap trials: {what}, {args.trials} trials "
        "per row; one study per row; trials/min between the first trial's start and the last's end.",
        "",
        "| workers | trials/min | ratio to first row | mean trial s | wall s (with start-up) |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['workers']} | {row['trials_per_minute']:.1f} | {row['trials_per_minute'] / base:.2f} "
            f"| {row['mean_trial_seconds']:.2f} | {row['wall_seconds']:.1f} |"
        )
    RESULTS.mkdir(exist_ok=True)
    stem = "worker_throughput" + ("_optimizer" if args.job == "optimizer" else "")
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    (RESULTS / f"{stem}.json").write_text(json.dumps(rows, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
