"""Optimizer search benchmark: mct vs random vs evolution on the search task, then transfer, plus speed figures.

Full protocol (about an hour on 2 CPU cores)::

    python benchmarks/optimizer_search.py --budget 128 --seeds 0 1 2

1. Each searcher (mct, random, evolution, and evolution whose first population holds Adam, as the Lion
   search starts from AdamW) runs ``--budget`` evaluations on toy2d-moons for each seed (one study per run, one
   SQLite file for everything, so an interrupted benchmark resumes).
2. The ``--top`` best rules of every run and the hand-designed optimizers (SGD, Adam, AdamW, Lion, PowerSign,
   AddSign), each with its lr from the same grid, are trained on the search task and on the transfer task
   (digits, a small UNet2DModel); one table holds them all.
3. Speed: candidates sampled and tested (hash + descent/non-degeneracy test) per second; dedup of
   ``--dedup-programs`` programs by probe hashing vs by sympy (simplify + canonical form).

Writes benchmarks/results/optimizer_search.md and .json; the ledger of every training is
optimizer_search.db, committed as optimizer_search.db.gz and unpacked on the first run.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import optuna

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from diffsearch.errors import UsageError  # noqa: E402
from diffsearch.jobs.optimizer import LedgerEvaluator, OptimizerOptions, run_optimizer  # noqa: E402
from diffsearch.ledger import create_or_load_study, open_storage  # noqa: E402
from diffsearch.optimizers.rules import baseline  # noqa: E402
from diffsearch.spaces.update_rule_space import UpdateRuleSpace, to_sympy  # noqa: E402
from diffsearch.spaces.update_rules import parse, to_text  # noqa: E402
from diffsearch.tasks.optimizer_tasks import make_task, parse_lr_grid  # noqa: E402

BASELINES = ("SGD", "Adam", "AdamW", "Lion", "PowerSign", "AddSign", "Muon")
LEDGER = "optimizer_search.db"  # kept in git gzipped (7x smaller): every training, so a rerun replays them


def unpacked_ledger(out: Path) -> str:
    """Storage URL of the benchmark's ledger, unpacked from its .gz when the .db is not there yet."""
    db, archive = out / LEDGER, out / f"{LEDGER}.gz"
    if not db.exists() and archive.exists():
        with gzip.open(archive, "rb") as src, db.open("wb") as dst:
            shutil.copyfileobj(src, dst)
    return f"sqlite:///{db.resolve()}"


def pack_ledger(out: Path) -> None:
    # mtime=0: an unchanged ledger packs to the same bytes, so git sees no change
    with (out / LEDGER).open("rb") as src, gzip.GzipFile(out / f"{LEDGER}.gz", "wb", 9, mtime=0) as dst:
        shutil.copyfileobj(src, dst)


def speed(space: UpdateRuleSpace, n: int, seed: int = 0) -> dict:
    """Candidates sampled and tested per second, and how many of them pass."""
    rng = np.random.default_rng(seed)
    start, passed, keys = time.perf_counter(), 0, set()
    for _ in range(n):
        program = space.sample(rng)
        key = space.key(program)
        if key not in keys:
            keys.add(key)
            passed += space.check(program) is None
    seconds = time.perf_counter() - start
    return {"sampled": n, "unique": len(keys), "passed": passed, "seconds": seconds, "per_second": n / seconds}


def dedup_comparison(space: UpdateRuleSpace, n: int, sympy_limit_s: float, seed: int = 1) -> dict:
    """Dedup n valid programs by probe hash vs by sympy's simplified canonical form."""
    rng = np.random.default_rng(seed)
    programs, keys = [], set()
    while len(programs) < n:
        program = space.sample(rng)
        if space.check(program) is None:
            programs.append(program)
    start = time.perf_counter()
    for program in programs:
        keys.add(space.key(program))
    hash_s = time.perf_counter() - start
    import sympy as sp

    start, forms, done, errors = time.perf_counter(), set(), 0, 0
    for program in programs:
        try:
            forms.add(sp.srepr(sp.simplify(to_sympy(program))))
        except Exception:  # sympy gives up on some programs (NaN comparisons): keep them apart
            errors += 1
            forms.add(repr(program))
        done += 1
        if time.perf_counter() - start > sympy_limit_s:
            break
    sympy_s = time.perf_counter() - start
    return {
        "programs": n,
        "hash_seconds": hash_s,
        "hash_unique": len(keys),
        "sympy_programs": done,
        "sympy_seconds": sympy_s,
        "sympy_errors": errors,
        "sympy_unique": len(forms),
        "hash_unique_same_programs": len({space.key(p) for p in programs[:done]}),
        "speedup_per_program": (sympy_s / done) / (hash_s / n),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=int, default=128)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument(
        "--searchers",
        nargs="+",
        default=["mct", "random", "evolution", "evolution:Adam"],
        help="evolution:NAMES = evolution whose first population holds these hand-designed rules "
        "(comma list), as the Lion search starts from AdamW",
    )
    ap.add_argument("--task", default="toy2d-moons")
    ap.add_argument("--transfer", default="digits")
    ap.add_argument(
        "--table-seeds",
        type=int,
        nargs="+",
        default=[0, 1, 2],
        help="training seeds of every table row on the search task (mean +- std)",
    )
    ap.add_argument(
        "--transfer-seeds",
        type=int,
        nargs="+",
        default=[0, 1, 2],
        help="training seeds of every table row on the transfer task (mean +- std)",
    )
    ap.add_argument(
        "--top",
        type=int,
        default=3,
        help="distinct best rules of every run that go to the table (and the transfer task)",
    )
    ap.add_argument(
        "--table-lr-grid",
        default="decade",
        help="lr grid of the table's trainings (the searches keep the reference 'decade' grid): "
        "'decade', 'half-decade' or a comma list",
    )
    ap.add_argument("--tag", default="optimizer_search", help="name of the result files (.md, .json)")
    ap.add_argument("--dedup-programs", type=int, default=1000)
    ap.add_argument("--sympy-limit", type=float, default=300.0, help="seconds allowed to the sympy dedup")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply the tasks' steps (smoke tests)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    if args.top < 1:
        ap.error("--top must be at least 1")
    try:
        table_grid = parse_lr_grid(args.table_lr_grid)
        for spec in args.searchers:
            searcher, _, names = spec.partition(":")
            OptimizerOptions(searcher=searcher, start_from=tuple(n for n in names.split(",") if n)).resolved()
    except UsageError as exc:
        ap.error(str(exc))
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    storage_url = unpacked_ledger(out)
    report: dict = {"args": vars(args), "runs": []}
    t0 = time.perf_counter()
    space = UpdateRuleSpace()
    report["speed"] = speed(space, 1000)
    print("speed", report["speed"], flush=True)
    report["dedup"] = dedup_comparison(space, args.dedup_programs, args.sympy_limit)
    print("dedup", report["dedup"], flush=True)

    for spec in args.searchers:
        # evolution:Adam is another searcher: its own studies and label
        searcher, _, names = spec.partition(":")
        start_from = tuple(n for n in names.split(",") if n)
        label = f"{searcher} from {'+'.join(start_from)}" if start_from else searcher
        for seed in args.seeds:
            start = time.perf_counter()
            r = run_optimizer(
                OptimizerOptions(
                    task=args.task,
                    searcher=searcher,
                    budget=args.budget,
                    seed=seed,
                    baselines=(),
                    top=args.top,
                    scale=args.scale,
                    study=f"bench-{label.replace(' ', '-')}-seed{seed}",
                    start_from=start_from,
                    storage=storage_url,
                    out=str(out / "optimizer_runs"),
                )
            )
            best = r["best"]
            top = [row["expr"] for row in r["leaderboard"] if row["kind"] == "rule"][: args.top]
            run = {
                "searcher": label,
                "seed": seed,
                "best_expr": best and best["expr"],
                "best_score": best and best["score"],
                "best_lr": best and best["lr"],
                "top_exprs": top,
                **r["search"],
                "seconds": time.perf_counter() - start,
                # what the search cost when it ran, also when this call replayed it from the storage
                "trial_seconds": sum(t["seconds"] or 0.0 for t in r["trials"] if t["role"] == "search"),
            }
            report["runs"].append(run)
            print(json.dumps(run), flush=True)

    # one table: the top rules of every run (a rule found by several runs once) and the hand-designed
    # optimizers, on both tasks
    storage = open_storage(storage_url)
    # one table study per grid: a row trained with another grid is another measurement
    table_study = "bench-table" if args.table_lr_grid == "decade" else f"bench-table-{args.table_lr_grid}"
    study = create_or_load_study(storage, table_study, {"job": "optimizer-benchmark", "lr_grid": list(table_grid)})
    rows, seen = [], set()
    for run in report["runs"]:
        for rank, expr in enumerate(run.get("top_exprs") or [], start=1):
            if expr not in seen:
                seen.add(expr)
                rows.append((f"{run['searcher']} seed {run['seed']} #{rank}", parse(expr), 0.0))
    rows += [(name, *baseline(name)) for name in BASELINES]
    table = [
        {"name": name, "expr": program if isinstance(program, str) else to_text(program), "weight_decay": wd}
        for name, program, wd in rows
    ]
    # every row is trained with several seeds on both tasks: seed-to-seed noise is of the order of the
    # gaps between optimizers
    for task_name, key, seeds in (
        (args.task, "search", args.table_seeds),
        (args.transfer, "transfer", args.transfer_seeds),
    ):
        task = make_task(task_name, args.scale, lr_grid=table_grid)
        for seed in seeds:
            evaluator = LedgerEvaluator(study, space, task, key, seed)
            for row, (name, program, wd) in zip(table, rows):
                t = evaluator.trial(program, wd, name)
                value = t.value if t.value is not None else math.inf
                row.setdefault(f"{key}_scores", []).append(value)
                row.setdefault(f"{key}_lr", {})[seed] = t.user_attrs.get("lr")
                print(name, key, seed, value, flush=True)
    for row in table:
        for key, seeds in (("search", args.table_seeds), ("transfer", args.transfer_seeds)):
            finite = [v for v in row[f"{key}_scores"] if math.isfinite(v)]
            row[f"{key}_mean"] = statistics.fmean(finite) if finite else None
            row[f"{key}_std"] = statistics.stdev(finite) if len(finite) > 1 else 0.0
            row[f"{key}_lr"] = "/".join(f"{row[f'{key}_lr'][s]:g}" if row[f"{key}_lr"][s] else "-" for s in seeds)
    report["table"] = table
    report["total_seconds"] = time.perf_counter() - t0
    pack_ledger(out)
    (out / f"{args.tag}.json").write_text(json.dumps(report, indent=2, default=str))
    (out / f"{args.tag}.md").write_text(markdown(report, args))
    print(markdown(report, args))


def _f(x, fmt=".4f"):
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, fmt)


def markdown(report: dict, args) -> str:
    lines = [
        "# Optimizer search benchmark",
        "",
        f"Command: `python benchmarks/optimizer_search.py --searchers {' '.join(args.searchers)} "
        f"--budget {args.budget} --seeds "
        f"{' '.join(map(str, args.seeds))} --table-seeds {' '.join(map(str, args.table_seeds))} "
        f"--transfer-seeds {' '.join(map(str, args.transfer_seeds))} --top {args.top} "
        f"--dedup-programs {args.dedup_programs}"
        + (f" --table-lr-grid {args.table_lr_grid}" if args.table_lr_grid != "decade" else "")
        + (f" --tag {args.tag}" if args.tag != "optimizer_search" else "")
        + "` "
        f"(total {report['total_seconds'] / 60:.1f} min for this call; trainings found in the ledger are replayed).",
        "",
        f"Search task {args.task}, transfer task {args.transfer}; score = denoising loss on a fixed batch "
        "after training (lower is better); every rule's lr from a grid by proxy runs: in the searches 1e-5, "
        "1e-4, ..., 1 (the reference's); in the table "
        + ", ".join(f"{v:g}" for v in parse_lr_grid(args.table_lr_grid))
        + ".",
        "",
        "## Searchers",
        "",
        "| searcher | seed | best loss | best rule | lr | trained | proposed | duplicates "
        "| rejected | training minutes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["runs"]:
        lines.append(
            f"| {r['searcher']} | {r['seed']} | {_f(r['best_score'])} | `{r['best_expr']}` | {_f(r['best_lr'], 'g')} "
            f"| {r['evaluated']} | {r['proposed']} | {r['duplicates']} | {r['rejected']} | {r.get('trial_seconds', r['seconds']) / 60:.1f} |"
        )
    lines += ["", "| searcher | mean best loss ± std over seeds |", "|---|---|"]
    for s in dict.fromkeys(r["searcher"] for r in report["runs"]):
        scores = [r["best_score"] for r in report["runs"] if r["searcher"] == s and r["best_score"] is not None]
        if scores:
            std = statistics.stdev(scores) if len(scores) > 1 else 0.0
            lines.append(f"| {s} | {statistics.fmean(scores):.4f} ± {std:.4f} ({len(scores)} seeds) |")
    seeds, transfer_seeds = " ".join(map(str, args.table_seeds)), " ".join(map(str, args.transfer_seeds))
    adamw = next(r for r in report["table"] if r["name"] == "AdamW")
    lines += [
        "",
        "## Discovered vs hand-designed, both tasks (lr from the same grid for every row)",
        "",
        f"Mean ± std over training seeds ({args.task}: {seeds}; {args.transfer}: {transfer_seeds}); each seed "
        "makes its own lr pick, initial weights and batches. 'vs AdamW' counts the tasks where the row's mean "
        "is below AdamW's.",
        "",
        f"| optimizer | update rule | lr ({args.task}, per seed) | {args.task} | lr ({args.transfer}, per seed) "
        f"| {args.transfer} | vs AdamW |",
        "|---|---|---|---|---|---|---|",
    ]

    def below(row, key):
        return row[f"{key}_mean"] is not None and row[f"{key}_mean"] < adamw[f"{key}_mean"]

    for row in sorted(report["table"], key=lambda r: r["search_mean"] if r["search_mean"] is not None else math.inf):
        wd = f" (+ wd {row['weight_decay']:g})" if row["weight_decay"] else ""
        wins = "-" if row is adamw else f"{below(row, 'search') + below(row, 'transfer')}/2"
        lines.append(
            f"| {row['name']} | `{row['expr']}`{wd} | {row['search_lr']} | {_f(row['search_mean'])} ± "
            f"{_f(row['search_std'])} | {row['transfer_lr']} | {_f(row['transfer_mean'])} ± "
            f"{_f(row['transfer_std'])} | {wins} |"
        )
    sp, dd = report["speed"], report["dedup"]
    lines += [
        "",
        "## Speed",
        "",
        f"- candidates sampled and tested (probe hash + descent / non-degeneracy test): "
        f"{sp['per_second']:.0f} per second ({sp['sampled']} sampled, {sp['unique']} unique, {sp['passed']} passed)",
        f"- dedup of {dd['programs']} valid programs by probe hashing: {dd['hash_seconds']:.2f} s "
        f"({dd['hash_unique']} distinct); by sympy simplify + canonical form: {dd['sympy_seconds']:.1f} s for "
        f"{dd['sympy_programs']} programs ({dd['sympy_errors']} sympy errors; {dd['sympy_unique']} distinct vs {dd['hash_unique_same_programs']} by hash "
        f"on the same programs); hashing is {dd['speedup_per_program']:.0f}x faster per program",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
