"""Do the rules that beat AdamW in the optimizer benchmark's table still beat it over more seeds?

The table of ``benchmarks/optimizer_search.py`` trains every row with 3 seeds; gaps between optimizers
are of the order of the seed-to-seed spread. This script re-trains chosen rules and AdamW with
``--seeds N`` training seeds on both tasks, paired by seed (the same initial weights and batches for
both), and reports the mean paired difference, wins, and paired t-test and Wilcoxon p-values.

    python benchmarks/optimizer_confirm.py --seeds 10            # rules whose table means beat AdamW on both
    python benchmarks/optimizer_confirm.py --rules "sign(ml)"    # any rules

Trainings go to the benchmark's ledger (``optimizer_search.db``, study ``bench-table``; unpacked
from ``optimizer_search.db.gz`` on the first run), so the table's
seeds are replayed, not re-trained, and an interrupted call resumes. Writes
benchmarks/results/optimizer_confirm.md and .json.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import optuna
from scipy.stats import ttest_rel, wilcoxon

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from diffsearch.errors import UsageError  # noqa: E402
from diffsearch.jobs.optimizer import LedgerEvaluator  # noqa: E402
from diffsearch.ledger import create_or_load_study, open_storage  # noqa: E402
from diffsearch.optimizers.rules import baseline, baseline_names  # noqa: E402
from diffsearch.spaces.update_rule_space import UpdateRuleSpace  # noqa: E402
from diffsearch.spaces.update_rules import parse, to_text  # noqa: E402
from diffsearch.tasks.optimizer_tasks import LR_GRID, make_task  # noqa: E402
from optimizer_search import pack_ledger, unpacked_ledger  # noqa: E402


def winners(table_json: Path) -> list[tuple[str, str]]:
    """(name, expr) of the table's discovered rules whose means beat AdamW's on both tasks."""
    table = json.loads(table_json.read_text())["table"]
    adamw = next(r for r in table if r["name"] == "AdamW")
    return [
        (r["name"], r["expr"])
        for r in table
        if r["name"] not in baseline_names()
        and all(r[f"{k}_mean"] is not None and r[f"{k}_mean"] < adamw[f"{k}_mean"] for k in ("search", "transfer"))
    ]


def paired(rule: list[float], reference: list[float]) -> dict:
    diff = [a - b for a, b in zip(rule, reference)]
    return {
        "mean": statistics.fmean(rule),
        "std": statistics.stdev(rule),
        "diff_mean": statistics.fmean(diff),
        "diff_std": statistics.stdev(diff),
        "wins": sum(d < 0 for d in diff),
        "n": len(diff),
        "t_test_p": float(ttest_rel(rule, reference).pvalue),
        "wilcoxon_p": float(wilcoxon(diff).pvalue),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rules", nargs="*", default=None, help="expressions (default: the table's winners)")
    ap.add_argument("--reference", default="AdamW", help="hand-designed optimizer to compare with")
    ap.add_argument("--seeds", type=int, default=10, help="training seeds 0 .. N-1 on each task")
    ap.add_argument("--task", default="toy2d-moons")
    ap.add_argument("--transfer", default="digits")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    out = Path(args.out)
    try:
        if args.seeds < 3:
            raise UsageError("--seeds must be at least 3 for a paired test")
        if args.reference not in baseline_names():
            raise UsageError(f"unknown --reference {args.reference!r}; known: {', '.join(baseline_names())}")
        rules = (
            [(f"rule {i + 1}", to_text(parse(e))) for i, e in enumerate(args.rules)]
            if args.rules is not None
            else winners(out / "optimizer_search.json")
        )
    except (UsageError, ValueError, FileNotFoundError) as exc:
        ap.error(str(exc))
    if not rules:
        ap.error("no rule to confirm: the table has no rule that beats the reference on both tasks; use --rules")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    start = time.perf_counter()
    storage = open_storage(unpacked_ledger(out))
    study = create_or_load_study(storage, "bench-table", {"job": "optimizer-benchmark", "lr_grid": list(LR_GRID)})
    space = UpdateRuleSpace()
    rows = [(args.reference, *baseline(args.reference))] + [(name, parse(expr), 0.0) for name, expr in rules]
    scores: dict[str, dict[str, list[float]]] = {name: {} for name, _, _ in rows}
    for task_name, role in ((args.task, "search"), (args.transfer, "transfer")):
        task = make_task(task_name)
        for seed in range(args.seeds):
            evaluator = LedgerEvaluator(study, space, task, role, seed)
            for name, program, wd in rows:
                t = evaluator.trial(program, wd, name)
                scores[name].setdefault(task_name, []).append(t.value if t.value is not None else math.inf)
            print(task_name, seed, {n: round(s[task_name][-1], 4) for n, s in scores.items()}, flush=True)
    report = {
        "args": vars(args),
        "rules": [],
        "seconds": time.perf_counter() - start,
        "reference": {
            t: {"mean": statistics.fmean(v), "std": statistics.stdev(v)} for t, v in scores[args.reference].items()
        },
    }
    for name, program, _ in rows[1:]:
        report["rules"].append(
            {
                "name": name,
                "expr": to_text(program),
                **{t: paired(scores[name][t], scores[args.reference][t]) for t in (args.task, args.transfer)},
            }
        )
    pack_ledger(out)
    (out / "optimizer_confirm.json").write_text(json.dumps(report, indent=2))
    (out / "optimizer_confirm.md").write_text(markdown(report, args))
    print(markdown(report, args))
    return 0


def markdown(report: dict, args) -> str:
    ref = report["reference"]
    lines = [
        "# Paired re-training of the rules that beat AdamW",
        "",
        f"Command: `python benchmarks/optimizer_confirm.py --seeds {args.seeds}`"
        + (f" `--rules {' '.join(args.rules)}`" if args.rules else "")
        + f" ({report['seconds'] / 60:.1f} min). Training seeds 0..{args.seeds - 1} on each task; seed s gives "
        f"every optimizer the same initial weights and batches; lr from the grid 1e-5, 1e-4, ..., 1 per run. "
        f"Difference = rule - {args.reference} (negative: the rule is better).",
        "",
        f"{args.reference}: {args.task} {ref[args.task]['mean']:.4f} ± {ref[args.task]['std']:.4f}, "
        f"{args.transfer} {ref[args.transfer]['mean']:.4f} ± {ref[args.transfer]['std']:.4f}.",
        "",
        "| rule | task | mean ± std | paired difference | wins | t-test p | Wilcoxon p |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["rules"]:
        for t in (args.task, args.transfer):
            p = r[t]
            lines.append(
                f"| {r['name']}: `{r['expr']}` | {t} | {p['mean']:.4f} ± {p['std']:.4f} "
                f"| {p['diff_mean']:+.4f} ± {p['diff_std']:.4f} | {p['wins']}/{p['n']} "
                f"| {p['t_test_p']:.3f} | {p['wilcoxon_p']:.3f} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
