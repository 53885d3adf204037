"""Noise search on the shipped Fashion-MNIST Stable Diffusion (``--model fashion``): does searching the
initial noise with a verifier give images an independent judge finds better?

Prompts: the 40 hard prompts of the prompt testbed (benchmarks/prompt_testbed.py ``--hard 40 --pool 200``:
the pool's prompts whose plain generation has the highest judge-CLIP loss on seeds 0-1; attributes, unusual
templates, WordNet synonyms the captions never used). For each prompt and each of ``--reps`` user seeds
(1000, 1001, ...: never used to choose the prompts), the user's image is the plain generation from that seed;
each searcher (its seed = the user's) starts from it and spends 4x, 16x (and ``--budgets``) the NFE of one
generation (10 DDIM steps x 2 passes of classifier-free guidance = 20 NFE).

Verifier (what the search minimises): the judge CLIP's spherical loss (``--clip fashion``; the search
maximises minus it; the tables show the loss, lower is better).
Held-out judges (never used to choose): the judge classifier (a CNN trained on real Fashion-MNIST): is the
asked class there; the pixel attributes asked (dark / bright, small / large: on the asked side of the
class's median on real images); class + attributes: both right.

Per prompt, the mean over user seeds; paired over prompts against the user's image: Wilcoxon signed-rank
(scipy) and the sign test (prompts better / worse). The verifier's score sits beside the judges' so that
verifier hacking (the verifier up, the judges not) shows. Cells are written to the JSON as they finish;
a rerun with the same settings skips them.

A searcher too slow to run on every prompt in the time given is summarised on the prompts it ran (the
first of the list; the table's ``prompts`` column), paired against the user's image on those prompts.

    nice -n 10 python benchmarks/noise_search.py --quick        # a minute: it works
    nice -n 10 python benchmarks/noise_search.py                # the full run (~40 prompts x 2 seeds)
    # the 40 prompts the classifier gets wrong, one user seed, 4x / 16x / 64x (results/noise_search_wrong.md);
    # processes side by side write their own --out and the last one merges them with --no-run:
    nice -n 10 python benchmarks/noise_search.py --hard-by classifier --reps 1 --budgets 4,16,64 \
        --searchers best-of-n,particles,gradient,zero-order,paths --out benchmarks/results/noise_search_wrong
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from prompt_testbed import Case, prompt_pool  # noqa: E402  (its prompts and words)

from diffsearch.backends import fashion_sd as fs  # noqa: E402
from diffsearch.backends.stable_diffusion import load_backend  # noqa: E402
from diffsearch.objectives.clip import ClipObjective, ClipReward  # noqa: E402
from diffsearch.objectives.ensemble import Verifier  # noqa: E402
from diffsearch.searchers.noise.base import NoiseSearchSettings  # noqa: E402
from diffsearch.searchers.noise.registry import NOISE_SEARCHERS  # noqa: E402
from diffsearch.spaces.noise import Candidate  # noqa: E402
from diffsearch.tasks.noise_task import NoiseTask  # noqa: E402

RESULTS = Path(__file__).parent / "results"
HARD = RESULTS / "prompt_testbed_hard.json"
FIRST_USER_SEED = 1000
METRICS = (
    ("verifier", "verifier (minus the judge-CLIP loss)"),
    ("accuracy", "classifier acc."),
    ("attribute_accuracy", "attribute acc."),
    ("all_right", "class + attributes"),
)


def hard_cases(n: int, by: str = "clip") -> list[Case]:
    """The prompt testbed's hard prompts (its JSON), as its Cases: ``clip``, the prompts it searched (highest
    judge-CLIP loss of the plain generation on seeds 0-1); ``classifier``, the ones the judge classifier
    got most wrong on the same seeds 0-1 (the testbed's comparison list; the user seeds here are others)."""
    if HARD.is_file():
        data = json.loads(HARD.read_text())
        pool = {c["prompt"]: Case(**c) for c in data["selection"]["pool_prompts"]}
        return [pool[p] for p in data["selection"]["chosen" if by == "clip" else "by_classifier"]][:n]
    return prompt_pool(n, 0)  # without the testbed's results: its pool, unselected (said in the report)


class Judge:
    """The held-out judges on one image of a case."""

    def __init__(self):
        self.judge = fs.Judge()

    def __call__(self, case: Case, images: torch.Tensor) -> dict:
        labels = np.full(len(images), case.label)
        right = self.judge.classify(images.float().cpu()) == labels
        bright, size = self.judge.attribute_sides(images.float().cpu(), labels)
        asked = [(s == w) for s, w in ((bright, case.brightness), (size, case.size)) if w is not None]
        all_right = right & np.all(asked, axis=0) if asked else right
        return {
            "accuracy": float(right.mean()),
            "attribute_accuracy": float(np.mean(asked)) if asked else None,
            "all_right": float(all_right.mean()),
        }


def one_search(backend, verifier, judge: Judge, case: Case, searcher: str, budget: int, seed: int) -> dict:
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage())  # every scored image a trial
    task = NoiseTask(backend, verifier, case.prompt, study, budget, seed, Candidate(seed=seed, origin="user"))
    start = time.perf_counter()
    user = task.evaluate([task.user])[0]
    info = {} if searcher == "user" else NOISE_SEARCHERS.get(searcher)().search(task, NoiseSearchSettings())
    best = task.best()
    seconds = time.perf_counter() - start
    out = {
        "verifier": float(best.scores[0]),
        "user_verifier": float(user.scores[0]),
        "spent_nfe": task.spent,
        "forward_nfe": task.forward_nfe,
        "trials": len(study.trials),
        "seconds": seconds,
        "moved": best.candidate.latent is not None,
        "injections": len(best.candidate.injections),
        "is_user": best is user,
        "info": info,
    }
    out.update(judge(case, task.replay(best.candidate)))
    return out


def paired(after: list[float], before: list[float]) -> dict:
    from scipy.stats import binomtest, wilcoxon

    d = np.array(after) - np.array(before)
    better, worse = int((d > 0).sum()), int((d < 0).sum())
    p_w = float(wilcoxon(after, before).pvalue) if better + worse else None
    p_s = float(binomtest(better, better + worse).pvalue) if better + worse else None
    return {"diff": float(d.mean()), "better": better, "worse": worse, "p_wilcoxon": p_w, "p_sign": p_s}


def complete(cells: dict, cases: list[Case], reps: int, searcher: str, budget) -> list[Case]:
    """The prompts with every user seed's cell of this searcher and budget."""
    return [c for c in cases if all(key(c, r, searcher, budget) in cells for r in range(reps))]


def per_prompt(cells: dict, cases: list[Case], reps: int, searcher: str, budget: str, metric: str) -> list[float]:
    """Per prompt, the mean over user seeds (None-free: prompts that ask no attribute are left out of it)."""
    out = []
    for case in cases:
        values = [cells[key(case, r, searcher, budget)][metric] for r in range(reps)]
        values = [v for v in values if v is not None]
        if values:
            out.append(statistics.fmean(values))
    return out


def key(case: Case, rep: int, searcher: str, budget) -> str:
    return f"{case.prompt}|{rep}|{searcher}|{budget}"


def summarise(cells: dict, cases: list[Case], args, seconds: dict) -> tuple[str, dict]:
    """One row per searcher and budget, on the prompts where it ran for every user seed (all of them unless a
    searcher was too slow to run on every prompt: the ``prompts`` column says), paired against the user's
    image on those same prompts."""
    asked = {c.prompt for c in cases}
    lines = [
        "# Noise search on `--model fashion`: verifier vs held-out judges",
        "",
        f"{len(cases)} hard prompts (the prompt testbed's hardest 40 of 200 by the "
        f"{'judge-CLIP loss of their plain generation' if args.hard_by == 'clip' else 'judge classifier on their plain generation (class + attributes)'}"
        f" on seeds 0-1) x {args.reps} user seed(s) ({FIRST_USER_SEED}..); {args.steps} DDIM steps, "
        f"guidance 7.5: one generation = {args.steps} x 2 = {args.steps * 2} NFE. Each searcher starts from the "
        "user's image and spends the budget (NFE of one generation x the factor, the user's image included). "
        "Verifier: the judge-CLIP spherical loss (the search minimises it). Held-out: the judge classifier and "
        "the pixel attributes, never used to choose. Per prompt: the mean over user seeds; p: paired over "
        "prompts against the user's image on the same prompts (W: Wilcoxon signed-rank, S: sign test); "
        "better / worse: prompts. A row on fewer prompts than the others (`prompts`) is a searcher too slow on "
        "2 shared CPU cores to run on all: the first prompts of the list, in its order; its `your seed` values "
        "are those prompts' own.",
        "",
        f"Wall time on 2 shared CPU cores: {sum(v for k, v in seconds.items() if k.split('|')[0] in asked) / 60:.1f} "
        "min for all searches "
        "(seconds per search in the last column: mean over prompts and user seeds).",
        "",
        "| searcher | budget | NFE | prompts | verifier: judge-CLIP loss (your seed -> chosen) | Δ loss (p W) "
        "| classifier acc. (your seed -> chosen) | Δ acc. | better / worse | p W / S "
        "| class + attr. | Δ class + attr. | p W / S | s / search |",
        "|" + "---|" * 14,
    ]
    summary = {}
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    user = {m: per_prompt(cells, cases, args.reps, "user", "1", m) for m, _ in METRICS}
    lines.append(
        f"| your seed | 1x | {args.steps * 2} | {len(cases)} | {-statistics.fmean(user['verifier']):.3f} | | "
        f"{statistics.fmean(user['accuracy']):.3f} | | | | {statistics.fmean(user['all_right']):.3f} | | | |"
    )
    order = args.searchers + [x for x, _ in args.extra if x not in args.searchers]
    for searcher, factor in sorted(
        {(s, f) for s in args.searchers for f in args.budgets} | set(args.extra),
        key=lambda sf: (sf[1], order.index(sf[0])),
    ):
        done = complete(cells, cases, args.reps, searcher, factor)
        if not done:
            continue
        m = {name: per_prompt(cells, done, args.reps, searcher, factor, name) for name, _ in METRICS}
        base = {name: per_prompt(cells, done, args.reps, "user", "1", name) for name, _ in METRICS}
        tests = {name: paired(m[name], base[name]) for name, _ in METRICS}
        per_search = statistics.fmean(
            cells[key(c, r, searcher, factor)]["seconds"] for c in done for r in range(args.reps)
        )
        summary[f"{searcher}@{factor}x"] = {
            "prompts": len(done),
            "means": {n: statistics.fmean(v) for n, v in m.items()},
            "user_means": {n: statistics.fmean(v) for n, v in base.items()},
            "tests": tests,
            "seconds_per_search": per_search,
        }
        a, v, c = tests["accuracy"], tests["verifier"], tests["all_right"]
        lines.append(
            f"| {searcher} | {factor}x | {factor * args.steps * 2} | {len(done)} | "
            f"{-statistics.fmean(base['verifier']):.3f} -> {-statistics.fmean(m['verifier']):.3f} | "
            f"{-v['diff']:+.3f} ({fmt(v['p_wilcoxon'])}) | "
            f"{statistics.fmean(base['accuracy']):.3f} -> {statistics.fmean(m['accuracy']):.3f} | {a['diff']:+.3f} | "
            f"{a['better']} / {a['worse']} | {fmt(a['p_wilcoxon'])} / {fmt(a['p_sign'])} | "
            f"{statistics.fmean(m['all_right']):.3f} | {c['diff']:+.3f} | {fmt(c['p_wilcoxon'])} / {fmt(c['p_sign'])} | "
            f"{per_search:.1f} |"
        )
    steps = {
        k: statistics.fmean(cells[key(c, r, *k)]["info"]["iterations"] for c in cases for r in range(args.reps))
        for k in sorted({(s, f) for s in args.searchers for f in args.budgets} | set(args.extra), key=lambda sf: sf[1])
        if all(key(c, r, *k) in cells for c in cases for r in range(args.reps))
        and all("iterations" in cells[key(c, r, *k)]["info"] for c in cases for r in range(args.reps))
    }
    if steps:
        lines += [
            "",
            "Gradient steps per search (each costs its forward NFE plus twice that for the backward pass; "
            "the remaining budget goes to random seeds, so with no step the searcher is best-of-N): "
            + ", ".join(f"{s} at {f}x: {n:.1f}" for (s, f), n in steps.items())
            + ".",
        ]
    lines += [
        "",
        "More compute for the same searcher, paired over the prompts both budgets ran on: does the verifier's "
        "gain carry over to the held-out judge? (verifier hacking: the loss falls, the accuracy does not rise)",
        "",
        "| searcher | budgets | prompts | Δ judge-CLIP loss (p W) | Δ classifier acc. | better / worse | p W / S |",
        "|---|---|---|---|---|---|---|",
    ]
    for searcher in order:
        budgets = sorted(
            f for s, f in {(s, f) for s in args.searchers for f in args.budgets} | set(args.extra) if s == searcher
        )
        for low, high in zip(budgets, budgets[1:]):
            both = [
                c
                for c in complete(cells, cases, args.reps, searcher, low)
                if c in complete(cells, cases, args.reps, searcher, high)
            ]
            if not both:
                continue
            m = {
                f: {n: per_prompt(cells, both, args.reps, searcher, f, n) for n in ("verifier", "accuracy")}
                for f in (low, high)
            }
            v, a = paired(m[high]["verifier"], m[low]["verifier"]), paired(m[high]["accuracy"], m[low]["accuracy"])
            summary[f"{searcher}@{low}x->{high}x"] = {"prompts": len(both), "verifier": v, "accuracy": a}
            lines.append(
                f"| {searcher} | {low}x -> {high}x | {len(both)} | {-v['diff']:+.3f} ({fmt(v['p_wilcoxon'])}) | "
                f"{a['diff']:+.3f} | {a['better']} / {a['worse']} | {fmt(a['p_wilcoxon'])} / {fmt(a['p_sign'])} |"
            )
    return "\n".join(lines) + "\n", summary


def plot(summary: dict, args, path: Path) -> None:
    """Change against the user's image (paired over the prompts each point ran on) against NFE: the
    verifier's loss and the held-out judges, side by side, so that verifier hacking shows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, (metric, label) in zip(
        axes,
        (
            ("verifier", "verifier: Δ judge-CLIP loss (lower is better)"),
            ("accuracy", "held-out: Δ classifier acc."),
            ("all_right", "held-out: Δ class + attributes"),
        ),
    ):
        for searcher in dict.fromkeys(args.searchers + [x for x, _ in args.extra]):
            points = sorted(
                (int(k.split("@")[1][:-1]), v)
                for k, v in summary.items()
                if k.split("@")[0] == searcher and "->" not in k
            )
            if not points:
                continue
            xs = [args.steps * 2] + [f * args.steps * 2 for f, _ in points]
            ys = [0.0] + [(-1 if metric == "verifier" else 1) * v["tests"][metric]["diff"] for _, v in points]
            partial = any(v["prompts"] < args.prompts for _, v in points)
            ax.plot(
                xs,
                ys,
                marker="o",
                linestyle="--" if partial else "-",
                label=searcher + (" (subset)" if partial else ""),
            )
        ax.axhline(0, color="grey", linewidth=0.5)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("NFE (denoiser evaluations per image)")
        ax.set_title(label)
    axes[0].legend()
    fig.suptitle(
        f"Noise search on --model fashion: change vs your seed, {args.prompts} prompts x {args.reps} user seed(s)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--prompts", type=int, default=40)
    p.add_argument("--reps", type=int, default=2, help="user seeds per prompt")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--budgets", default="4,16", help="NFE factors of one generation")
    p.add_argument("--searchers", default="best-of-n,zero-order,paths,particles")
    p.add_argument(
        "--hard-by",
        default="clip",
        choices=("clip", "classifier"),
        help="prompt set: the testbed's hardest by the judge-CLIP loss, or by the classifier (seeds 0-1)",
    )
    p.add_argument("--first-rep", type=int, default=0, help="run user seeds from this index on (a second process)")
    p.add_argument("--merge", default="", help="comma-separated JSON files of other processes' cells to summarise with")
    p.add_argument("--extra", default="", help="more cells, e.g. best-of-n@64,zero-order@64")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--minutes", type=float, default=0, help="start no new prompt after this many minutes (0: no limit)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--no-run", action="store_true", help="summarise the cells made so far (and merged); run none")
    p.add_argument("--out", default=str(RESULTS / "noise_search"))
    args = p.parse_args(argv)
    if args.quick:
        args.prompts, args.reps, args.budgets, args.out = 2, 1, "4", "/tmp/noise_search_quick"
    args.budgets = [int(b) for b in args.budgets.split(",")]
    args.searchers = args.searchers.split(",")
    args.extra = [(x.split("@")[0], int(x.split("@")[1])) for x in args.extra.split(",") if x]
    if args.threads:
        torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    out = Path(args.out)
    json_path = out.with_suffix(".json")
    data = json.loads(json_path.read_text()) if json_path.is_file() else {}
    settings = {"steps": args.steps, "hard_by": args.hard_by}  # more --reps later reuse the cells made
    if {"hard_by": "clip", **data.get("settings", settings)} != settings:
        data = {}
    data["settings"], cells, seconds = settings, data.setdefault("cells", {}), data.setdefault("seconds", {})
    for other in filter(None, args.merge.split(",")):  # cells another process made (--first-rep)
        theirs = json.loads(Path(other).read_text())
        cells.update({k: v for k, v in theirs["cells"].items() if k not in cells})
        seconds.update({k: v for k, v in theirs.get("seconds", {}).items() if k not in seconds})
    cases = hard_cases(args.prompts, args.hard_by)
    backend = load_backend("fashion", steps=args.steps, guidance=7.5)
    verifier = Verifier([ClipReward(ClipObjective("fashion"))])
    judge = Judge()
    g = backend.steps * backend.passes_per_step()
    todo = [
        (c, r, s, f)
        for c in cases
        for r in range(args.first_rep, args.reps)
        for s, f in [("user", 1)] + [(s, f) for f in args.budgets for s in args.searchers] + args.extra
    ]
    start = time.perf_counter()
    for i, (case, rep, searcher, factor) in enumerate([] if args.no_run else todo):
        k = key(case, rep, searcher, factor)
        if k in cells:
            continue
        if (
            args.minutes
            and searcher == "user"
            and rep == args.first_rep
            and time.perf_counter() - start > 60 * args.minutes
        ):
            print(f"stopping: {args.minutes} min reached; the prompts finished so far are summarised", flush=True)
            break
        cells[k] = one_search(backend, verifier, judge, case, searcher, factor * g, FIRST_USER_SEED + rep)
        seconds[k] = cells[k]["seconds"]
        json_path.write_text(json.dumps(data))  # a stopped run keeps every finished cell
        if (i + 1) % 20 == 0 or i + 1 == len(todo):
            print(f"{i + 1}/{len(todo)} searches ({time.perf_counter() - start:.0f} s)", flush=True)
    json_path.write_text(json.dumps(data))
    cases = complete(cells, cases, args.reps, "user", 1)
    args.prompts = len(cases)
    text, summary = summarise(cells, cases, args, seconds)
    plot(summary, args, out.with_suffix(".png"))
    data["summary"] = summary
    json_path.write_text(json.dumps(data))
    out.with_suffix(".md").write_text(text + f"\n![curves]({out.with_suffix('.png').name})\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
