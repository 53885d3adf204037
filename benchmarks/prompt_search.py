"""Random vs evolution vs gpo vs gpo+es: the objective against the budget, on our prompt set.

For each prompt of diffsearch/datasets/prompts.txt (or --prompts) and each searcher, run the prompt job
with the same budget and record the best value found after each evaluation. Reported: the mean over
prompts of the best loss relative to the user input's (negative = better) at several budgets, and the
final mean +- std of the losses as in DPO-Diff's tables (Wang et al., ICML 2024). Offline it runs the
tiny random pipeline and a random CLIP, where losses only move by thousandths: the figures check the machinery and compare
searchers on the same footing, not SD quality. The same script takes real weights:

    nice -n 10 python benchmarks/prompt_search.py --budget 20 --prompts-limit 4            # tiny, CPU
    python benchmarks/prompt_search.py --model ~/sd-v1-4 --clip ViT-B-32:~/vit_b_32.pt --device cuda \\
        --steps 50 --budget 40 --space antonym+library
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from importlib import resources
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402

from diffsearch.jobs.prompt import Models, PromptOptions, optimise_prompt  # noqa: E402
from diffsearch.searchers.prompt.registry import PROMPT_SEARCHERS  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def best_at(trace, user_value, budget):
    """Best value (relative to the user input) among evaluations finished within ``budget`` generations."""
    values = [v for spent, v in trace if v is not None and spent <= budget + 1e-9]
    return min([user_value] + values) - user_value


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tiny")
    p.add_argument("--clip", default="tiny")
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--budget", type=float, default=20)
    p.add_argument("--space", default="antonym+library")
    p.add_argument("--seeds", type=int, default=1, help="images per evaluation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prompts", help="prompt file (default: diffsearch/datasets/prompts.txt)")
    p.add_argument("--prompts-limit", type=int, default=0, help="use only the first N prompts")
    p.add_argument("--searchers", default=",".join(PROMPT_SEARCHERS))
    p.add_argument("--out", default=str(RESULTS / "prompt_search"))
    args = p.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    text = (
        Path(args.prompts).read_text()
        if args.prompts
        else resources.files("diffsearch.datasets").joinpath("prompts.txt").read_text()
    )
    prompts = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    prompts = prompts[: args.prompts_limit] if args.prompts_limit else prompts
    base = PromptOptions(
        prompt=prompts[0],
        model=args.model,
        clip=args.clip,
        device=args.device,
        steps=args.steps,
        budget=args.budget,
        space=args.space,
        seeds=args.seeds,
        seed=args.seed,
        out="/tmp/unused",
        storage="sqlite:///:memory:",
    )
    models = Models(base)
    storage = optuna.storages.InMemoryStorage()
    rows = []
    for searcher in args.searchers.split(","):
        for i, prompt in enumerate(prompts):
            o = replace(base, prompt=prompt, searcher=searcher)
            start = time.perf_counter()
            record, task = optimise_prompt(o, models, prompt, storage, f"{searcher}-{i}")
            rows.append(
                {
                    "searcher": searcher,
                    "prompt": prompt,
                    "user_loss": record["user_input"]["loss"],
                    "best_loss": record["best"]["loss"],
                    "negative": record["best"]["negative"],
                    "positive": record["best"]["positive"],
                    "spent": task.spent,
                    "evaluations": len(task.seen),
                    "seconds": time.perf_counter() - start,
                    "trace": task.trace,
                }
            )
            print(
                f"{searcher:10s} {rows[-1]['user_loss']:.5f} -> {rows[-1]['best_loss']:.5f} "
                f"({rows[-1]['evaluations']} evals, {rows[-1]['seconds']:.1f}s) {prompt}",
                flush=True,
            )
    checkpoints = sorted({b for b in (5, 10, 20, 40, args.budget) if b <= args.budget})
    lines = [
        f"# Prompt search: objective against budget ({args.model} SD, {args.clip} CLIP, {args.steps} steps, "
        f"space {args.space}, {len(prompts)} prompts, seed {args.seed})",
        "",
        "Mean over prompts of (best loss - user input's loss), by budget in full generations (negative = better):",
        "",
        "| searcher | " + " | ".join(f"budget {b:g}" for b in checkpoints) + " | final loss mean ± std | improved |",
        "|---|" + "---|" * (len(checkpoints) + 2),
    ]
    curves = {}
    for searcher in args.searchers.split(","):
        mine = [r for r in rows if r["searcher"] == searcher]
        deltas = [statistics.fmean(best_at(r["trace"], r["user_loss"], b) for r in mine) for b in checkpoints]
        finals = [r["best_loss"] for r in mine]
        improved = sum(r["best_loss"] < r["user_loss"] for r in mine)
        lines.append(
            f"| {searcher} | "
            + " | ".join(f"{d:+.5f}" for d in deltas)
            + f" | {statistics.fmean(finals):.4f} ± {statistics.pstdev(finals):.4f} | {improved}/{len(mine)} |"
        )
        grid = [x / 4 for x in range(0, int(args.budget * 4) + 1)]
        curves[searcher] = (
            grid,
            [statistics.fmean(best_at(r["trace"], r["user_loss"], b) for r in mine) for b in grid],
        )
    users = [r["user_loss"] for r in rows if r["searcher"] == args.searchers.split(",")[0]]
    lines += [
        "",
        f"user input loss: {statistics.fmean(users):.4f} ± {statistics.pstdev(users):.4f}",
        f"command: python benchmarks/prompt_search.py {' '.join(sys.argv[1:])}",
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(str(out) + ".json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))
    Path(str(out) + ".md").write_text("\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(6, 4))
    for searcher, (x, y) in curves.items():
        ax.plot(x, y, label=searcher)
    ax.set_xlabel("budget (full generations)")
    ax.set_ylabel("mean best loss - user input loss")
    ax.set_title(f"prompt search, {len(prompts)} prompts ({args.model} SD)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(str(out) + ".png", dpi=110)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
