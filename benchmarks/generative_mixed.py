"""The generative searcher on the spaces users tune: mixed spaces with categoricals and conditionals,
smooth functions in 2-10 dimensions, and the training spaces (toy2d, images) through a cheap surrogate.

Each searcher runs as a user runs it, ``make_sampler(name, seed)``, for 40 trials (5 seeds), and is
ranked against random, TPE and GP by normalised regret (value - best) / (worst - best), best known by
construction, worst the largest of 5,000 random draws. ``generative`` is the default searcher (every category tried once,
then categoricals drawn by Thompson sampling); ``generative-before`` leaves categoricals to the model
from the start (``category_tries=0``, the searcher before any category exploration), ``generative-argmax`` after one try
each (``category_choice="model"``), ``generative-tries2`` after two tries each (screened alternatives).

Families:
- mixed: synthetic mixed spaces; categoricals with 3-6 choices, ints, log floats, conditionals;
- smooth: Branin (2-D), Hartmann-3, Hartmann-6, Rosenbrock-4 (log10(1 + f)), Levy-6, Levy-10;
- training: toy2d's and images' spaces (diffsearch/spaces/training.py) scored by a fixed analytic
  surrogate of a training run (not a trained model: lr optimum moving with batch size, scheduler,
  warm-up, optimizer and weight decay, timesteps or noise schedule each adding a fixed amount).

Screening (choosing category_tries and category_choice) used SCREEN_TASKS at seeds 100-102 only; the table's seeds 0-4
were never screened on, and HELD_OUT_TASKS never at all. Runs are cached per (task, searcher, seed)
in benchmarks/results/generative_mixed_runs.json, so a stopped run resumes and processes given
different --tasks share the cache.

    python benchmarks/generative_mixed.py --threads 1                         # the table (all searchers)
    python benchmarks/generative_mixed.py --screen --threads 1                # the screen (seeds 100-102)
    python benchmarks/generative_mixed.py --tasks mixed-issue --searchers generative
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import optuna
from scipy.stats import rankdata

sys.path.insert(0, str(Path(__file__).parent))
import generative_hpo as bench  # noqa: E402

from diffsearch.searchers import make_sampler  # noqa: E402
from diffsearch.searchers.hparams.generative_sampler import GenerativeSampler  # noqa: E402
from diffsearch.spaces.training import get_space  # noqa: E402

RESULTS = bench.RESULTS
CACHE = RESULTS / "generative_mixed_runs.json"
MAIN = ("random", "tpe", "gp", "generative")
# searcher name -> GenerativeSampler options; "generative" is the default (category_tries=1, thompson)
VARIANTS = {
    "generative-before": {"category_tries": 0, "category_choice": "model"},
    "generative-argmax": {"category_tries": 1, "category_choice": "model"},
    "generative-tries2": {"category_tries": 2, "category_choice": "model"},
}
SCREEN_TASKS = ("mixed-issue",)
SCREEN_SEEDS = (100, 101, 102)
HELD_OUT_TASKS = ("mixed-cat6", "mixed-cond5", "training-toy2d", "training-images")


class RandomTrial:
    """Optuna's suggest API drawing uniformly (log-uniformly) with numpy: to find each task's worst value."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def suggest_float(self, name, low, high, log=False):
        return (
            float(math.exp(self.rng.uniform(math.log(low), math.log(high))))
            if log
            else float(self.rng.uniform(low, high))
        )

    def suggest_int(self, name, low, high, log=False):
        return (
            int(round(self.suggest_float(name, low - 0.4999, high + 0.4999)))
            if not log
            else min(high, max(low, int(round(self.suggest_float(name, low, high, log=True)))))
        )

    def suggest_categorical(self, name, choices):
        return choices[int(self.rng.integers(len(choices)))]


# ------------------------------------------------------------------------------------------- mixed
def mixed_issue(t):
    """The issue's shape: log lr, int, a 3-way categorical, a float only for two of the categories."""
    kind = t.suggest_categorical("kind", ["relu", "tanh", "gelu"])
    p = {"lr": t.suggest_float("lr", 1e-5, 1e-1, log=True), "layers": t.suggest_int("layers", 1, 8), "kind": kind}
    if kind != "tanh":
        p["momentum"] = t.suggest_float("momentum", 0.0, 1.0)
    return p


def mixed_issue_f(p):
    off, lr_c, layers_c = {"relu": (0.3, -3.0, 3), "tanh": (0.6, -4.0, 6), "gelu": (0.0, -2.5, 5)}[p["kind"]]
    value = off + 0.05 * (math.log10(p["lr"]) - lr_c) ** 2 + 0.02 * (p["layers"] - layers_c) ** 2
    return value + (p["momentum"] - 0.7) ** 2 if "momentum" in p else value


OPT6 = {
    "sgd": (0.4, -1.5),
    "momentum": (0.25, -2.0),
    "adam": (0.1, -3.0),
    "adamw": (0.15, -3.0),
    "rmsprop": (0.3, -3.5),
    "lion": (0.0, -4.0),
}
ACT4 = {"relu": 0.1, "gelu": 0.0, "silu": 0.05, "tanh": 0.3}


def mixed_cat6(t):
    """Two categoricals (6 and 4 choices), a log float whose optimum depends on the first, a log int, a float."""
    return {
        "opt": t.suggest_categorical("opt", list(OPT6)),
        "act": t.suggest_categorical("act", list(ACT4)),
        "lr": t.suggest_float("lr", 1e-6, 1e-0, log=True),
        "units": t.suggest_int("units", 16, 512, log=True),
        "dropout": t.suggest_float("dropout", 0.0, 0.5),
    }


def mixed_cat6_f(p):
    off, lr_c = OPT6[p["opt"]]
    return (
        off
        + ACT4[p["act"]]
        + 0.04 * (math.log10(p["lr"]) - lr_c) ** 2
        + 0.05 * (math.log2(p["units"]) - 7) ** 2
        + (p["dropout"] - 0.1) ** 2
    )


def mixed_cond5(t):
    """A 5-way categorical, each choice with its own conditional parameters (a model-selection space)."""
    model = t.suggest_categorical("model", ["linear", "tree", "forest", "boosting", "svm"])
    p = {"model": model}
    if model == "linear":
        p["alpha"] = t.suggest_float("alpha", 1e-6, 1.0, log=True)
    if model in ("tree", "forest"):
        p["depth"] = t.suggest_int("depth", 1, 20)
    if model in ("forest", "boosting"):
        p["trees"] = t.suggest_int("trees", 10, 500, log=True)
    if model == "boosting":
        p["eta"] = t.suggest_float("eta", 1e-3, 1.0, log=True)
    if model == "svm":
        p["C"] = t.suggest_float("C", 1e-3, 1e3, log=True)
        p["gamma"] = t.suggest_float("gamma", 1e-4, 1.0, log=True)
    return p


def mixed_cond5_f(p):
    m = p["model"]
    if m == "linear":
        return 0.5 + 0.02 * (math.log10(p["alpha"]) + 3) ** 2
    if m == "tree":
        return 0.4 + 0.002 * (p["depth"] - 8) ** 2
    if m == "forest":
        return 0.15 + 0.002 * (p["depth"] - 12) ** 2 + 0.1 * (math.log10(p["trees"]) - 2.5) ** 2
    if m == "boosting":
        return 0.0 + 0.1 * (math.log10(p["trees"]) - 2) ** 2 + 0.2 * (math.log10(p["eta"]) + 1) ** 2
    return 0.1 + 0.1 * (math.log10(p["C"]) - 1) ** 2 + 0.3 * (math.log10(p["gamma"]) + 2) ** 2


# ------------------------------------------------------------------------------------------ smooth
HARTMANN3_A = np.array([[3.0, 10, 30], [0.1, 10, 35], [3.0, 10, 30], [0.1, 10, 35]])
HARTMANN3_P = 1e-4 * np.array([[3689, 1170, 2673], [4699, 4387, 7470], [1091, 8732, 5547], [381, 5743, 8828]])


def hartmann3(x):
    inner = (HARTMANN3_A * (np.asarray(x)[None] - HARTMANN3_P) ** 2).sum(axis=1)
    return float(-(bench.HARTMANN_ALPHA * np.exp(-inner)).sum())


def levy(x):
    w = 1 + (np.asarray(x) - 1) / 4
    return float(
        np.sin(np.pi * w[0]) ** 2
        + ((w[:-1] - 1) ** 2 * (1 + 10 * np.sin(np.pi * w[:-1] + 1) ** 2)).sum()
        + (w[-1] - 1) ** 2 * (1 + np.sin(2 * np.pi * w[-1]) ** 2)
    )


def rosenbrock_log(x):
    x = np.asarray(x)
    return float(math.log10(1 + (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()))


def box(dim, low, high):
    return lambda t: {f"x{i}": t.suggest_float(f"x{i}", low, high) for i in range(dim)}


def vector(f, dim):
    return lambda p: f([p[f"x{i}"] for i in range(dim)])


# ---------------------------------------------------------------------------------------- training
def training_surrogate(space_name):
    """A fixed analytic stand-in for the PRDC loss of one training run in a training space (no training)."""
    space = get_space(space_name)
    lo, hi = (math.log10(v) for v in space.lr_range)
    mid_batch = space.batch_sizes[len(space.batch_sizes) // 2]
    scheduler_cost = {"constant": 0.03, "constant_with_warmup": 0.02, "linear": 0.0, "cosine": 0.005}
    noise_cost = {"linear": 0.02, "scaled_linear": 0.03, "squaredcos_cap_v2": 0.0, "sigmoid": 0.01}

    def f(p):
        # the best lr grows with the batch size (0.3 decades per doubling), from a point inside the range
        lr_c = lo + 0.6 * (hi - lo) + 0.3 * math.log2(p["batch_size"] / mid_batch)
        value = 0.02 + 0.04 * (math.log10(p["lr"]) - lr_c) ** 2 + scheduler_cost[p["lr_scheduler"]]
        value += 2.0 * (p.get("warmup_ratio", 0.0) - 0.1) ** 2 if p["lr_scheduler"] != "constant" else 0.02
        if p["optimizer"] == "adamw":  # weight decay helps near 1e-4 and hurts when large
            value += -0.01 + 0.005 * (math.log10(p["weight_decay"]) + 4) ** 2
        if "num_train_timesteps" in p:
            value += 0.02 * ((p["num_train_timesteps"] - 60) / 40) ** 2
        if "beta_schedule" in p:
            value += noise_cost[p["beta_schedule"]]
        return value

    return space.suggest, f


def tasks() -> list[bench.Task]:
    specs = [
        ("mixed-issue", "mixed", mixed_issue, mixed_issue_f, 0.0),
        ("mixed-cat6", "mixed", mixed_cat6, mixed_cat6_f, 0.0),
        ("mixed-cond5", "mixed", mixed_cond5, mixed_cond5_f, 0.0),
        (
            "branin",
            "smooth",
            lambda t: {"x1": t.suggest_float("x1", -5, 10), "x2": t.suggest_float("x2", 0, 15)},
            lambda p: bench.branin(p["x1"], p["x2"]),
            0.397887,
        ),
        ("hartmann3", "smooth", box(3, 0, 1), vector(hartmann3, 3), -3.86278),
        ("hartmann6", "smooth", box(6, 0, 1), vector(lambda x: float(bench.hartmann6(np.array(x))[0]), 6), -3.32237),
        ("rosenbrock4", "smooth", box(4, -2.048, 2.048), vector(rosenbrock_log, 4), 0.0),
        ("levy6", "smooth", box(6, -10, 10), vector(levy, 6), 0.0),
        ("levy10", "smooth", box(10, -10, 10), vector(levy, 10), 0.0),
        (
            "training-toy2d",
            "training",
            *training_surrogate("toy2d"),
            0.01,
        ),  # lr at its optimum, linear, warm-up 0.1, adamw wd 1e-4, T 60
        ("training-images", "training", *training_surrogate("images"), 0.01),  # ... squaredcos_cap_v2
    ]
    rng = np.random.default_rng(0)
    out = []
    for name, family, suggest, f, best in specs:
        draws = [f(suggest(RandomTrial(rng))) for _ in range(5_000)]
        assert min(draws) >= best - 1e-9, (name, min(draws), best)  # best is a true lower bound
        out.append(bench.Task(name, family, suggest, f, best, max(draws)))
    return out


def make(searcher: str, seed: int) -> optuna.samplers.BaseSampler:
    if searcher in VARIANTS:
        return GenerativeSampler(seed=seed, **VARIANTS[searcher])
    return make_sampler(searcher, seed)


def run_one(task: bench.Task, searcher: str, seed: int, trials: int) -> dict:
    """One run; it records the machine's 1-minute load average as it starts and as it ends, since the
    seconds per suggestion mean little without it on shared cores."""
    load = os.getloadavg()[0]
    sampler = make(searcher, seed)
    result = bench.optimize(optuna.create_study(sampler=sampler), task, trials)
    model = getattr(sampler, "_model", None)
    return {
        **result,
        "random_fallbacks": getattr(model, "random_fallbacks", 0),
        "load": [round(load, 2), round(os.getloadavg()[0], 2)],
    }


# ------------------------------------------------------------------------------------------ tables
def final_regret(runs, task, searcher, seed, trials):
    return task.regret_curve(runs[f"{task.name}|{searcher}|{seed}"], trials)[-1]


def common_seeds(runs, task, searchers, seeds):
    """The seeds at which every one of ``searchers`` has a run of ``task`` (a stopped benchmark has fewer)."""
    return [seed for seed in seeds if all(f"{task.name}|{s}|{seed}" in runs for s in searchers)]


def rank_table(runs, tasks_, seeds, trials, searchers, title) -> list[str]:
    """Mean final regret per family and mean rank at the last trial (ties share the mean rank), over the
    (task, seed) cells where every searcher has a run."""
    cells = [(t, seed) for t in tasks_ for seed in common_seeds(runs, t, searchers, seeds)]
    if not cells:
        return []
    used = [t for t in tasks_ if any(u is t for u, _ in cells)]
    families = sorted({t.family for t in used})
    ranks = {s: [] for s in searchers}
    for task, seed in cells:
        for s, r in zip(searchers, rankdata([final_regret(runs, task, s, seed, trials) for s in searchers])):
            ranks[s].append(r)
    described = ", ".join(f"{t.name} ({sum(u is t for u, _ in cells)} seeds)" for t in used)
    lines = [
        f"**{title}**: {len(cells)} (task, seed) cells: {described}",
        "",
        "| searcher | "
        + " | ".join(f"{f} ({sum(t.family == f for t in used)} tasks)" for f in families)
        + " | mean rank | s / suggestion |",
        "|---|" + "---|" * (len(families) + 2),
    ]
    for s in searchers:
        regret = [
            f"{np.mean([final_regret(runs, t, s, seed, trials) for t, seed in cells if t.family == f]):.4f}"
            for f in families
        ]
        secs = np.mean([runs[f"{t.name}|{s}|{seed}"]["seconds"][5:trials] for t, seed in cells])
        lines.append(f"| {s} | " + " | ".join(regret) + f" | {np.mean(ranks[s]):.2f} | {secs:.3f} |")
    return lines + [""]


def per_task_table(runs, tasks_, seeds, trials, searchers) -> list[str]:
    lines = ["| task | seeds | " + " | ".join(searchers) + " |", "|---|---|" + "---|" * len(searchers)]
    for task in tasks_:
        common = common_seeds(runs, task, searchers, seeds)
        if common:
            cells = [
                f"{np.mean([final_regret(runs, task, s, seed, trials) for seed in common]):.4f}" for s in searchers
            ]
            lines.append(f"| {task.name} | {', '.join(map(str, common))} | " + " | ".join(cells) + " |")
    return lines + [""]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    names = MAIN + tuple(VARIANTS)
    parser.add_argument("--tasks", nargs="*", help="only these tasks (processes with different tasks share the cache)")
    parser.add_argument("--searchers", nargs="+", choices=names, default=list(names))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument(
        "--screen",
        action="store_true",
        help=f"the screen: {', '.join(SCREEN_TASKS)} at seeds {SCREEN_SEEDS}, generative variants only",
    )
    parser.add_argument(
        "--rerun", nargs="*", default=[], choices=names, help="run these again instead of reading the cache"
    )
    bench.add_threads_option(parser)
    args = parser.parse_args(argv)
    bench.quiet_and_threaded(args.threads)
    suite = tasks()
    unknown = set(args.tasks or ()) - {t.name for t in suite}
    if unknown:
        parser.error(f"unknown tasks: {', '.join(sorted(unknown))}")
    seeds = SCREEN_SEEDS if args.screen else tuple(range(args.seeds))
    chosen = [
        t for t in suite if (not args.tasks or t.name in args.tasks) and (not args.screen or t.name in SCREEN_TASKS)
    ]
    runs = json.loads(CACHE.read_text()) if CACHE.exists() else {}
    for task in chosen:
        for seed in seeds:  # seed by seed: a stopped run leaves every searcher compared on the same seeds
            for searcher in args.searchers:
                if searcher in VARIANTS and task.family == "smooth":
                    continue  # no categorical: category_tries changes nothing (same code path, same draws)
                key = f"{task.name}|{searcher}|{seed}"
                if key in runs and len(runs[key]["incumbent"]) >= args.trials and searcher not in args.rerun:
                    continue
                start = time.perf_counter()
                result = run_one(task, searcher, seed, args.trials)
                print(
                    f"{key}: regret {task.regret(result['incumbent'][-1]):.4f} ({time.perf_counter() - start:.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )
                runs = bench.add_to_cache(CACHE, key, result)
    write_tables(runs, suite, args.trials)
    return 0


def where_this_holds(runs, suite, seeds, trials) -> list[str]:
    """What ran (cells per family and the seeds of each task), the load it ran under, what did not run."""
    done = {t.name: common_seeds(runs, t, MAIN, seeds) for t in suite}
    cells = sum(len(v) for v in done.values())
    families = sorted({t.family for t in suite})
    per_family = "; ".join(
        f"{f}: " + ", ".join(f"{t.name} ({len(done[t.name])})" for t in suite if t.family == f) for f in families
    )
    gen = [runs[k] for k in runs if k.split("|")[1] == "generative" and int(k.split("|")[2]) in seeds]
    gen_secs = [np.mean(r["seconds"][5:trials]) for r in gen if len(r["seconds"]) >= trials]
    loads = [x for r in runs.values() for x in r.get("load", [])]
    lines = [
        "**Where this holds.** "
        + (
            f"{cells} of {len(suite) * len(seeds)} (task, seed) cells of seeds {seeds[0]}-{seeds[-1]} ran for all four "
            f"searchers (seeds per task: {per_family}). The tables below use only those cells, listed in each; "
            "a family's figures are means over its cells, so a family with fewer seeds is a looser estimate."
        )
    ]
    if gen_secs:
        lines[0] += (
            f" A generative suggestion took {np.median(gen_secs):.1f} s (median over runs; "
            f"{min(gen_secs):.1f}-{max(gen_secs):.1f} s) of wall time on 2 CPU cores shared with other "
            "benchmarks, the run under `nice -n 10` with one torch thread"
        )
        lines[0] += (
            f"; the 1-minute load average was {min(loads):.1f}-{max(loads):.1f} where runs recorded it "
            f"({sum('load' in r for r in runs.values())} runs; earlier runs did not record it)."
            if loads
            else "."
        )
    missing = [
        f"{t.name} (seeds {', '.join(str(s) for s in seeds if s not in done[t.name])})"
        for t in suite
        if len(done[t.name]) < len(seeds)
    ]
    if missing:
        lines[0] += (
            " Not run (no time on the shared cores; rerunning the command resumes from the cache): "
            + "; ".join(missing)
            + "."
        )
    return lines + [""]


def write_tables(runs, suite, trials) -> None:
    seeds = tuple(range(5))
    text = [
        "# The generative searcher on mixed, smooth and training spaces (random / TPE / GP / generative)",
        "",
        f"{trials} trials, normalised regret at the last trial (0 = the known optimum, 1 = the worst of 5,000 "
        "random draws), rank among the searchers of each table per task and seed (1 = best, ties share). "
        "Generated by `python benchmarks/generative_mixed.py --threads 1` (`--screen` for the screen) on 2 CPU "
        "cores shared with other work: seconds per suggestion are inflated and only comparable within "
        "this table. The training family is an analytic surrogate of toy2d's and images' spaces (their "
        "real parameters and conditionals, a fixed formula as the score), not real training runs.",
        "",
    ]
    text += where_this_holds(runs, suite, seeds, trials)
    ran = [t for t in suite if common_seeds(runs, t, MAIN, seeds)]
    text += ["## Random / TPE / GP / generative, seeds 0-4 (never screened on)", ""]
    text += rank_table(runs, ran, seeds, trials, MAIN, "all tasks run")
    text += rank_table(
        runs, [t for t in ran if t.name in HELD_OUT_TASKS], seeds, trials, MAIN, "held-out tasks (never screened on)"
    )
    text += ["### Regret per task (mean over the seeds listed)", ""] + per_task_table(runs, ran, seeds, trials, MAIN)
    with_categoricals = [t for t in suite if t.family != "smooth"]
    text += [
        "## Categoricals: the model's choice, then Thompson sampling (the default), seeds 0-4",
        "",
        "generative-before: category_tries=0, categoricals by the model's samples (argmax of their one-hot "
        "codes); generative-argmax: every choice tried once first, then the model's samples; generative (the "
        "default): every choice tried once first, then each categorical drawn per suggestion by Thompson "
        "sampling over its choices' share of the best quarter of trials, the model proposing the rest. "
        "Chosen on the screen below; the smooth tasks have no categorical, so there all three are one run. Seconds "
        "per suggestion compare runs made under different loads (most generative-argmax runs at a load of 6-11, "
        "the generative runs at 2-4): they say nothing about the two methods' cost, which is the same model "
        "fit and sampling.",
        "",
    ]
    variants = ("random", "tpe", "gp", "generative-argmax", "generative")
    text += rank_table(runs, with_categoricals, seeds, trials, variants, "tasks with categoricals")
    text += rank_table(
        runs,
        [t for t in with_categoricals if t.name in HELD_OUT_TASKS],
        seeds,
        trials,
        variants,
        "held-out tasks with categoricals (never screened on)",
    )
    text += per_task_table(runs, with_categoricals, seeds, trials, variants) + [""]
    text += [
        "## The screen (seeds " + ", ".join(map(str, SCREEN_SEEDS)) + ", tasks " + ", ".join(SCREEN_TASKS) + ")",
        "",
        "generative-tries2: every choice tried twice first, then the model's samples. Each searcher over "
        "the screen seeds it ran (not every variant ran all three).",
        "",
        "| task | searcher | seeds | regret per seed | mean |",
        "|---|---|---|---|---|",
    ]
    for task in (t for t in suite if t.name in SCREEN_TASKS):
        for searcher in ("tpe", "generative-before", "generative-argmax", "generative-tries2", "generative"):
            ran = [seed for seed in SCREEN_SEEDS if f"{task.name}|{searcher}|{seed}" in runs]
            if ran:
                values = [final_regret(runs, task, searcher, seed, trials) for seed in ran]
                text.append(
                    f"| {task.name} | {searcher} | {', '.join(map(str, ran))} | "
                    f"{', '.join(f'{v:.4f}' for v in values)} | {np.mean(values):.4f} |"
                )
    (RESULTS / "generative_mixed.md").write_text("\n".join(text))
    summary = {
        key: task.regret(run["incumbent"][trials - 1])
        for key, run in sorted(runs.items())
        for task in suite
        if key.startswith(task.name + "|") and len(run["incumbent"]) >= trials
    }
    (RESULTS / "generative_mixed.json").write_text(json.dumps({"trials": trials, "final_regret": summary}, indent=1))
    print("\n".join(text))


if __name__ == "__main__":
    raise SystemExit(main())
