"""Prompt search and noise search on the shipped Fashion-MNIST model: alone, one after the other, or together,
at the same budget, judged by the held-out classifier and pixel attributes.

Same prompts, user seeds, verifier (judge-CLIP score) and held-out judges as benchmarks/noise_search.py.
Every strategy spends ``--generations`` generations (one generation = 10 DDIM steps x 2 passes = 20 NFE),
the user's image (their prompt, no negative prompt, their seed) included, and keeps the verifier's favourite:

  noise            best-of-N over seeds, no negative prompt (diffsearch noise --searcher best-of-n)
  prompt           random search over negative prompts (the antonym+library space of DPO-Diff, Wang et
                   al., ICML 2024, as diffsearch prompt --space antonym+library --searcher random) at the
                   user's seed
  prompt-then-noise  half the budget on negative prompts at the user's seed, then half on random seeds with
                   the best negative prompt (diffsearch prompt, then diffsearch noise --negative-prompt)
  together         random (negative prompt, seed) pairs

Random search in the prompt space: the prompt testbed found DPO-Diff's gradient searcher no better than
random on the held-out judges of this model (benchmarks/results/prompt_testbed_hard.md).

    python benchmarks/noise_prompt.py --prompts 40        # writes benchmarks/results/noise_prompt.{md,json}
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
from noise_search import FIRST_USER_SEED, METRICS, RESULTS, Judge, hard_cases, paired  # noqa: E402

from diffsearch.jobs.prompt import Models, PromptOptions  # noqa: E402
from diffsearch.objectives.ensemble import Verifier  # noqa: E402
from diffsearch.spaces.noise import Candidate  # noqa: E402
from diffsearch.spaces.prompts import build_space  # noqa: E402
from diffsearch.tasks.noise_task import SEED_RANGE, NoiseTask  # noqa: E402

STRATEGIES = ("noise", "prompt", "prompt-then-noise", "together")


class Evaluator:
    """Scores (negative prompt, seed) pairs with the verifier, one generation each, counted."""

    def __init__(self, backend, verifier, prompt: str):
        self.backend, self.verifier, self.prompt = backend, verifier, prompt
        self.generations, self.tasks = 0, {}

    def task(self, negative: str) -> NoiseTask:
        if negative not in self.tasks:
            g = self.backend.steps * self.backend.passes_per_step()
            self.tasks[negative] = NoiseTask(
                self.backend, self.verifier, self.prompt, None, 10**9 * g, negative=negative
            )
        return self.tasks[negative]

    def __call__(self, pairs: list[tuple[str, int]]) -> list[tuple[float, str, int]]:
        out = []
        for negative in dict.fromkeys(n for n, _ in pairs):
            seeds = [s for n, s in pairs if n == negative]
            scored = self.task(negative).evaluate([Candidate(seed=s) for s in seeds])
            out += [(float(x.scores[0]), negative, s) for x, s in zip(scored, seeds)]
        self.generations += len(pairs)
        return out


def run_strategy(strategy: str, ev: Evaluator, space, seed: int, budget: int) -> tuple[float, str, int]:
    rng = np.random.default_rng(seed)
    seeds = lambda k: [int(s) for s in rng.integers(0, SEED_RANGE, k)]  # noqa: E731
    negatives = lambda k: [space.texts(space.sample(rng))[1] for _ in range(k)]  # noqa: E731
    user = [("", seed)]
    if strategy == "noise":
        scored = ev(user + [("", s) for s in seeds(budget - 1)])
    elif strategy == "prompt":
        scored = ev(user + [(n, seed) for n in negatives(budget - 1)])
    elif strategy == "together":
        scored = ev(user + list(zip(negatives(budget - 1), seeds(budget - 1))))
    else:
        half = budget // 2
        first = ev(user + [(n, seed) for n in negatives(half - 1)])
        best_negative = max(first)[1]
        scored = first + ev([(best_negative, s) for s in seeds(budget - half)])
    assert ev.generations == budget, (strategy, ev.generations)
    return max(scored, key=lambda x: x[0])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--prompts", type=int, default=40)
    p.add_argument("--generations", type=int, default=16)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--minutes", type=float, default=0, help="start no new prompt after this many minutes (0: no limit)")
    p.add_argument("--out", default=str(RESULTS / "noise_prompt"))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    cases = hard_cases(args.prompts)
    o = PromptOptions(
        prompt=cases[0].prompt,
        model="fashion",
        clip="fashion",
        steps=args.steps,
        guidance=7.5,
        space="antonym+library",
        searcher="random",
        out="/tmp/noise_prompt_run",
        storage="sqlite:///:memory:",
    ).resolved()
    models = Models(o)
    backend, verifier, judge = models.backend, Verifier([models.reward]), Judge()
    out = Path(args.out)
    json_path = out.with_suffix(".json")
    data = json.loads(json_path.read_text()) if json_path.is_file() else {}
    if data.get("settings") != {"steps": args.steps, "generations": args.generations}:
        data = {"settings": {"steps": args.steps, "generations": args.generations}, "cells": {}}
    cells = data["cells"]
    start = time.perf_counter()
    for i, case in enumerate(cases):
        if args.minutes and time.perf_counter() - start > 60 * args.minutes:
            print(f"stopping: {args.minutes} min reached; the prompts finished so far are summarised", flush=True)
            break
        space = build_space(
            "antonym+library",
            case.prompt,
            models.lexicon,
            models.one_token,
            backend.max_tokens(),
            lambda s: len(backend.token_ids(s)),
        )
        for strategy in ("user",) + STRATEGIES:
            key = f"{case.prompt}|{strategy}"
            if key in cells:
                continue
            ev = Evaluator(backend, verifier, case.prompt)
            score, negative, seed = (
                ev([("", FIRST_USER_SEED)])[0]
                if strategy == "user"
                else run_strategy(strategy, ev, space, FIRST_USER_SEED, args.generations)
            )
            image = ev.task(negative).replay(Candidate(seed=seed))
            cells[key] = {
                "verifier": score,
                "negative": negative,
                "seed": seed,
                "generations": ev.generations,
                **judge(case, image),
            }
        json_path.write_text(json.dumps(data))
        print(f"{i + 1}/{len(cases)} prompts ({time.perf_counter() - start:.0f} s)", flush=True)
    cases = [c for c in cases if all(f"{c.prompt}|{s}" in cells for s in ("user",) + STRATEGIES)]
    lines = [
        "# Prompt search and noise search on `--model fashion`: alone, one after the other, together",
        "",
        f"{len(cases)} hard prompts (as benchmarks/noise_search.py), user seed {FIRST_USER_SEED}; every strategy "
        f"spends {args.generations} generations ({args.generations * args.steps * 2} NFE), the user's image "
        "included, and keeps the verifier's favourite (verifier: minus the judge-CLIP loss, higher is better). Held-out: the judge classifier and "
        "pixel attributes. p: paired over prompts against the user's image (W: Wilcoxon, S: sign test).",
        "",
        "| strategy | verifier | Δ verifier | classifier acc. | Δ acc. | better / worse | p W / S | class + attr. "
        "| Δ | p W / S | negative prompt kept |",
        "|" + "---|" * 11,
    ]
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    values = lambda s, m: [cells[f"{c.prompt}|{s}"][m] for c in cases]  # noqa: E731
    summary = {}
    for strategy in ("user",) + STRATEGIES:
        row = {m: statistics.fmean(values(strategy, m)) for m in ("verifier", "accuracy", "all_right")}
        kept = sum(1 for c in cases if cells[f"{c.prompt}|{strategy}"]["negative"])
        if strategy == "user":
            lines.append(
                f"| your image | {row['verifier']:.2f} | | {row['accuracy']:.3f} | | | | {row['all_right']:.3f} | | | |"
            )
            continue
        t = {m: paired(values(strategy, m), values("user", m)) for m, _ in METRICS if m != "attribute_accuracy"}
        summary[strategy] = {"means": row, "tests": t}
        a, c = t["accuracy"], t["all_right"]
        lines.append(
            f"| {strategy} | {row['verifier']:.2f} | {t['verifier']['diff']:+.2f} | {row['accuracy']:.3f} | "
            f"{a['diff']:+.3f} | {a['better']} / {a['worse']} | {fmt(a['p_wilcoxon'])} / {fmt(a['p_sign'])} | "
            f"{row['all_right']:.3f} | {c['diff']:+.3f} | {fmt(c['p_wilcoxon'])} / {fmt(c['p_sign'])} | "
            f"{kept} / {len(cases)} |"
        )
    data["summary"] = summary
    json_path.write_text(json.dumps(data))
    text = "\n".join(lines) + "\n"
    out.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
