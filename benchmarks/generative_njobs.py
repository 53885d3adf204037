"""Does the generative searcher survive threads? ``study.optimize(..., n_jobs=2)`` with GenerativeSampler
(its default configuration, as ``--searcher generative`` builds it), repeated in fresh processes.

The two threads of such a study share one sampler, so one diffusion model and one Adam optimiser. Before
the sampler serialised its model work (a lock), the threads fine-tuned the network at the same time:
RuntimeErrors in loss.backward(), AttributeErrors in Adam.step, now and then a segfault. Each run here is
a subprocess, so a crash shows up as its exit code (negative: killed by that signal, -11 = SIGSEGV)
instead of taking the benchmark down with it.

The objective is a cheap 2-D function (a shifted quadratic over one float and one int parameter), so
the time is the sampler's. Each child runs with OMP_NUM_THREADS=1 unless the caller set it.

    python benchmarks/generative_njobs.py                 # 10 runs of 20 trials; writes results/generative_njobs.md
    python benchmarks/generative_njobs.py --runs 3 --trials 8 --out /tmp/njobs.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
MARK = "NJOBS-RESULT "  # prefix of the child's one line of JSON on stdout


def objective(trial) -> float:
    x = trial.suggest_float("x", -5.0, 5.0)
    y = trial.suggest_int("y", -5, 5)
    return (x - 1.5) ** 2 + (y + 2) ** 2


def child(seed: int, trials: int, jobs: int) -> None:
    """One study in this process; prints its trial states on one line."""
    import optuna

    from diffsearch.searchers.hparams.generative_sampler import GenerativeSampler

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(sampler=GenerativeSampler(seed=seed))
    errors: set[str] = set()

    def noted(trial) -> float:  # the sampler fails inside the objective's suggest calls
        try:
            return objective(trial)
        except Exception as error:
            errors.add(type(error).__name__)
            raise

    # catch everything: a failed trial is what is being counted, not a reason to stop the study
    study.optimize(noted, n_trials=trials, n_jobs=jobs, catch=(Exception,))
    states = [t.state.name for t in study.trials]
    print(
        MARK
        + json.dumps(
            {
                "complete": states.count("COMPLETE"),
                "failed": states.count("FAIL"),
                "other": len(states) - states.count("COMPLETE") - states.count("FAIL"),
                "errors": sorted(errors),
            }
        ),
        flush=True,
    )


def run_once(seed: int, trials: int, jobs: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        str(seed),
        "--trials",
        str(trials),
        "--jobs",
        str(jobs),
    ]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    result = {
        "seed": seed,
        "exit_code": done.returncode,
        "seconds": seconds,
        "complete": None,
        "failed": None,
        "other": None,
        "errors": [],
    }
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARK)]
    if lines:
        result.update(json.loads(lines[-1][len(MARK) :]))
    if done.returncode != 0:
        result["stderr_tail"] = done.stderr.strip().splitlines()[-3:]
    return result


def report(results: list[dict], args) -> str:
    def cell(value):
        return "-" if value is None else str(value)

    lines = [
        "# GenerativeSampler under `study.optimize(..., n_jobs=2)`",
        "",
        f"{len(results)} runs, each a fresh process running one {args.trials}-trial study with "
        f"n_jobs={args.jobs} and `GenerativeSampler(seed=run)` (default configuration, 5 random start-up "
        "trials), on a 2-D quadratic (one float, one int parameter).",
        "",
        f"    python benchmarks/generative_njobs.py --runs {args.runs} --trials {args.trials} --jobs {args.jobs}",
        "",
        f"Python {platform.python_version()}, {os.cpu_count()} CPU cores (shared), "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '1')} per run; {time.strftime('%Y-%m-%d')}.",
        "",
        "| run | exit code | finished trials | failed trials | seconds | errors |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        errors = ", ".join(r["errors"]) or ("; ".join(r.get("stderr_tail", [])) if r["exit_code"] else "")
        lines.append(
            f"| {r['seed']} | {r['exit_code']} | {cell(r['complete'])} | {cell(r['failed'])} | "
            f"{r['seconds']:.1f} | {errors} |"
        )
    crashed = sum(r["exit_code"] != 0 for r in results)
    finished = sum(r["complete"] or 0 for r in results)
    failed = sum(r["failed"] or 0 for r in results)
    clean = sum(r["exit_code"] == 0 and r["failed"] == 0 and r["complete"] == args.trials for r in results)
    seconds = [r["seconds"] for r in results]
    lines += [
        "",
        f"Summary: {clean}/{len(results)} runs clean; {crashed} crashed (non-zero exit code); "
        f"{finished}/{len(results) * args.trials} trials finished, {failed} failed; "
        f"{min(seconds):.1f}-{max(seconds):.1f} s per run ({sum(seconds) / len(seconds):.1f} s mean).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=10, help="studies, each in a fresh process (default 10)")
    parser.add_argument("--trials", type=int, default=20, help="trials per study (default 20)")
    parser.add_argument("--jobs", type=int, default=2, help="threads per study, Optuna's n_jobs (default 2)")
    parser.add_argument(
        "--out",
        type=Path,
        default=RESULTS / "generative_njobs.md",
        help="the Markdown report (default benchmarks/results/generative_njobs.md)",
    )
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)  # internal: one run, this process
    args = parser.parse_args(argv)
    if args.child is not None:
        child(args.child, args.trials, args.jobs)
        return 0
    results = []
    for seed in range(args.runs):
        result = run_once(seed, args.trials, args.jobs)
        results.append(result)
        print(
            f"run {seed}: exit {result['exit_code']}, finished {result['complete']}, failed {result['failed']}, "
            f"{result['seconds']:.1f} s {' '.join(result['errors'])}",
            flush=True,
        )
    text = report(results, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
