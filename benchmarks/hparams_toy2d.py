"""The 2-D protocol of the thesis study of Optuna HPO for diffusion training: baseline x 10, random 50,
TPE 50, random + successive halving 50, each best config re-trained 10 times, on swiss roll, moons and
spirals.

Every study lives in one storage (default benchmarks/results/hparams_toy2d.db), so the protocol can be
completed over several runs: rerunning resumes where it stopped. The table (shaped like the thesis
study's 2-D tables) is rewritten from the storage after every strategy:
benchmarks/results/hparams_toy2d.md and .json.

    python benchmarks/hparams_toy2d.py                      # the full protocol (hours on 2 cores)
    python benchmarks/hparams_toy2d.py --datasets moons --strategies tpe --repeats 0   # one study
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import optuna

from diffsearch.jobs.hparams import HparamsOptions, run_hparams

RESULTS = Path(__file__).parent / "results"
STRATEGIES = {  # name -> (searcher, pruner)
    "random": ("random", "none"),
    "tpe": ("tpe", "none"),
    "random+sh": ("random", "sh"),
}
SEED_TABLE = {  # the thesis study's reported PRDC (lower is better), for the relative-improvement comparison
    "swissroll": {"baseline": 0.0524, "tpe": 0.0166, "random": 0.0161, "random+sh": 0.0161},
    "moons": {"baseline": 0.0437, "tpe": 0.0131, "random": 0.0142, "random+sh": 0.0169},
    "spirals": {"baseline": 0.1727, "tpe": 0.0186, "random": 0.0167, "random+sh": 0.0167},
}


def options_for(args, dataset: str, strategy: str) -> HparamsOptions:
    common = dict(
        dataset=dataset,
        epochs=args.epochs,
        seed=args.seed,
        storage=args.storage,
        out=str(Path(args.runs) / f"{dataset}-{strategy}"),
        study=f"toy2d-{dataset}-{strategy}",
        jobs=args.jobs,
        baseline_runs=0,
        min_epochs=min(8, max(1, args.epochs // 4)),
    )
    if strategy == "baseline":
        return HparamsOptions(**common, baseline=True, repeats=args.repeats or 1)
    searcher, prune = STRATEGIES[strategy]
    return HparamsOptions(**common, searcher=searcher, prune=prune, trials=args.trials, repeats=args.repeats)


def earlier_repeats(args, dataset: str, strategy: str, params: dict) -> dict | None:
    """Re-trainings of the best config made by an earlier run with --repeats, read from the storage,
    so a later run with --repeats 0 (to add other strategies) keeps them in the table."""
    from optuna.trial import TrialState

    from diffsearch.jobs.hparams import summarise_repeats

    study = optuna.load_study(study_name=f"toy2d-{dataset}-{strategy}.repeats", storage=args.storage)
    key = json.dumps(params, sort_keys=True)
    trials = [
        t
        for t in study.get_trials(deepcopy=False)
        if t.user_attrs.get("role") == "best"
        and t.user_attrs.get("params_key") == key
        and t.state == TrialState.COMPLETE
    ]
    return summarise_repeats(trials) if trials else None


def halving_speedup(args, dataset: str) -> str | None:
    """Successive halving vs random search: minutes until SH's best is within 10 % of random's best."""
    from optuna.trial import TrialState

    from diffsearch.jobs.hparams import busy_minutes
    from diffsearch.ledger import done_trials

    try:
        studies = {
            name: optuna.load_study(study_name=f"toy2d-{dataset}-{name}", storage=args.storage)
            for name in ("random", "random+sh")
        }
    except KeyError:
        return None
    done = {
        name: [t for t in s.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE] for name, s in studies.items()
    }
    if len(done["random"]) < args.trials or not done["random+sh"]:
        return None
    target = 1.1 * min(t.value for t in done["random"])

    def minutes_until(name: str, bound: float) -> float | None:
        # busy time, not the span from the first start: a study resumed days later must not count the gap
        hits = [t.datetime_complete for t in done[name] if t.value <= bound]
        return busy_minutes(done_trials(studies[name]), until=min(hits)) if hits else None

    sh_best = min(t.value for t in done["random+sh"])
    sh_time = minutes_until("random+sh", target)
    random_time = minutes_until("random", target)
    reach = (
        f"reached {target:.4f} (within 10 % of random's best) after {sh_time:.1f} min vs random's "
        f"{random_time:.1f} min: {random_time / sh_time:.1f}x faster"
        if sh_time
        else f"never reached {target:.4f} (best {sh_best:.4f})"
    )
    return f"- {dataset}: successive halving {reach}."


def _num(value, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(rows: list[dict]) -> str:
    lines = [
        "| data set | strategy | PRDC loss (mean ± std) | runs | best trial | trials (complete/pruned/failed) "
        "| study minutes | vs baseline | thesis study's vs baseline |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["mean"] is None:
            score = "-"
        elif r["runs"]:
            score = f"{r['mean']:.4f} ± {r['std']:.4f}"
        else:
            score = f"{r['mean']:.4f} (best trial, not re-trained)"
        lines.append(
            f"| {r['dataset']} | {r['strategy']} | {score} | {r['runs']} | {_num(r['best'])} | "
            f"{r['counts']} | {_num(r['minutes'], 1)} | {r['improvement']} | {r['seed_improvement']} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["swissroll", "moons", "spirals"])
    parser.add_argument("--strategies", nargs="+", default=["baseline", "random", "tpe", "random+sh"])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=10, help="re-trainings of the baseline / best config")
    parser.add_argument("--jobs", type=int, default=2, help="parallel trial processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--storage", default=f"sqlite:///{(RESULTS / 'hparams_toy2d.db').resolve()}")
    parser.add_argument("--runs", default="benchmarks/runs", help="samples and plots (not committed)")
    parser.add_argument(
        "--table-only", action="store_true", help="rewrite the table from the stored results and studies; train nothing"
    )
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    RESULTS.mkdir(exist_ok=True)
    if args.table_only:
        rows = merged_rows([])
        for row in rows:
            row["improvement"] = improvement(row["strategy"], earlier_baseline(row["dataset"]), row["mean"])
        write_tables(args, rows)
        print(table(rows))
        return 0
    rows = []
    for dataset in args.datasets:
        baseline_mean = earlier_baseline(dataset)  # replaced below when this run trains the baseline
        for strategy in args.strategies:
            print(f"== {dataset} / {strategy}", file=sys.stderr, flush=True)
            result = run_hparams(
                options_for(args, dataset, strategy), log=lambda line: print(line, file=sys.stderr, flush=True)
            )
            summary = result.get("baseline") if strategy == "baseline" else result.get("best_repeats")
            best = result.get("best")
            if summary is None and best is not None:
                summary = earlier_repeats(args, dataset, strategy, best["params"])
            mean = summary["mean"] if summary else (best["score"] if best else None)
            if strategy == "baseline":
                baseline_mean = mean
            counts = {}
            for t in result.get("trials", []):
                counts[t["state"].lower()] = counts.get(t["state"].lower(), 0) + 1
            seed = SEED_TABLE.get(dataset, {})
            rows.append(
                {
                    "dataset": dataset,
                    "strategy": strategy,
                    "mean": mean,
                    "std": summary["std"] if summary else 0.0,
                    "runs": summary["runs"] if summary else 0,
                    "best": best["score"] if best else None,
                    "best_params": best["params"] if best else None,
                    "counts": f"{counts.get('complete', 0)}/{counts.get('pruned', 0)}/{counts.get('fail', 0)}"
                    if counts
                    else "-",
                    "minutes": result.get("study_minutes"),
                    "improvement": improvement(strategy, baseline_mean, mean),
                    "seed_improvement": improvement(strategy, seed.get("baseline"), seed.get(strategy)),
                }
            )
            write_tables(args, rows)
    print(table(merged_rows(rows)))
    return 0


def improvement(strategy: str, baseline_mean: float | None, mean: float | None) -> str:
    if strategy == "baseline" or not baseline_mean or mean is None:
        return "-"
    return f"{100 * (baseline_mean - mean) / baseline_mean:+.1f} %"


def earlier_baseline(dataset: str) -> float | None:
    """The baseline's mean from an earlier run's results file, so a run of other strategies still gets
    its 'vs baseline' column."""
    rows = [r for r in merged_rows([]) if r["dataset"] == dataset and r["strategy"] == "baseline"]
    return rows[0]["mean"] if rows else None


def merged_rows(rows: list[dict]) -> list[dict]:
    """This run's rows over those of earlier runs (other data sets, other strategies) in the results file."""
    path = RESULTS / "hparams_toy2d.json"
    earlier = json.loads(path.read_text()) if path.exists() else []
    fresh = {(r["dataset"], r["strategy"]) for r in rows}
    kept = [r for r in earlier if (r["dataset"], r["strategy"]) not in fresh]
    order = {name: i for i, name in enumerate(("baseline", "random", "tpe", "random+sh"))}
    return sorted(kept + rows, key=lambda r: (r["dataset"], order.get(r["strategy"], 9)))


def write_tables(args, rows: list[dict]) -> None:
    rows = merged_rows(rows)
    (RESULTS / "hparams_toy2d.json").write_text(json.dumps(rows, indent=2))
    datasets = sorted({r["dataset"] for r in rows})
    lines = [line for line in (halving_speedup(args, d) for d in datasets) if line]
    speedups = "\n## Successive halving vs random search\n\n" + "\n".join(lines) + "\n" if lines else ""
    (RESULTS / "hparams_toy2d.md").write_text(
        f"# 2-D protocol ({args.trials} trials, {args.epochs} epochs, {args.repeats} repeats, "
        f"{args.jobs} parallel processes on 2 CPU cores)\n\nPRDC loss = mean |1 - part| over "
        "precision, recall, density, coverage (k = 5); lower is better. 'vs baseline' is the "
        "relative improvement of the re-trained mean.\n\n" + table(rows) + "\n" + speedups
    )


if __name__ == "__main__":
    raise SystemExit(main())
