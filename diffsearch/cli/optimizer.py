"""``diffsearch optimizer``: arguments and printing for the update-rule search."""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.table import Table
from rich.text import Text

from diffsearch.cli.parser import add_trial_timeout, add_worker_arguments
from diffsearch.cli.progress import best_so_far_bar, finish

from diffsearch.jobs.optimizer import OptimizerOptions, run_optimizer
from diffsearch.searchers.tree.registry import TREE_SEARCHERS
from diffsearch.errors import UsageError
from diffsearch.optimizers.rules import baseline_names
from diffsearch.optimizers import TORCH_BASELINES
from diffsearch.spaces.update_rules import BINARY, LEAVES, UNARY, parse
from diffsearch.tasks.optimizer_tasks import SCORES, TASKS
from diffsearch.tasks.user_task import is_user_task

DESCRIPTION = f"""\
Discover an optimizer update rule for diffusion training, as ENOS (Wang et al., NeurIPS 2022) does.
A rule is an expression tree; the optimizer steps  w <- w - lr * rule. Each candidate is trained on the task with its
learning rate picked from a grid (default 1e-5, 1e-4, ..., 1) by short proxy runs; its score is the denoising loss on a
fixed batch after training (lower is better). Programs equivalent to one already seen (same outputs on a
fixed random probe) and programs failing the descent test (mean cosine(update, gradient) <= 0.15 over
random gradients) or the non-degeneracy test are not trained and do not use the budget.

The language (one text format, infix):
  leaves:    {", ".join(f"{k} ({v})" for k, v in LEAVES.items())}
  unary:     {", ".join(f"{k}: {v}" for k, v in UNARY.items())}
  binary:    {", ".join(f"{k}: {v}" for k, v in BINARY.items())}; written + - * / ** or add(x, y) ...
Baselines: the hand-designed rules written in the language (SGD, Adam, AdamW, Lion, PowerSign, AddSign...) and
torch optimizers that are not programs: {"; ".join(f"{k}: {v[2]}" for k, v in TORCH_BASELINES.descriptions().items())}.
Each gets its lr from the same grid as the rules.

Judging at the length that matters (--promote 4,10): the search trains every candidate at the task's length; the
best quarter of its rules (at least --top) is re-trained at 4x that length, the best quarter of those at 10x, and
the leaderboard ranks rules and baselines by the longest run (10x), with the search length's score as a column
(successive halving over training steps: moons 300 -> 1,200 -> 3,000 steps). --transfer then trains at 10x too.

Use a found rule in your own code:  diffsearch.optimizers.from_expr("m1h / sqrt(m2h)", params, lr=1e-3)

Every training is an Optuna trial in one storage (default: a SQLite file in --out): rerunning the same
command replays the search from the storage and trains nothing twice.

tasks: {"; ".join(f"{k}: {e.description}" for k, e in TASKS.items())}.
A task of your own: --task module:factory, where factory() returns an object with name (str), steps (int: optimizer
steps per training) and train(make_optimizer, seed) -> float (lower is better) that builds its model from seed,
its optimizer with make_optimizer(model.parameters()), trains and returns a final loss or FID. Each rule is trained
once per lr of --lr-grid (each a full train()), and scored by the lowest value. The module is imported from the
current folder; workers rebuild the task from the same module:factory (see diffsearch/tasks/user_task.py).

examples:
  diffsearch optimizer --task toy2d-moons --searcher mct --budget 128
  diffsearch optimizer --searcher evolution --budget 64 --transfer digits --seed 1
  diffsearch optimizer --check "exp(ld * sg * sm1) * g"
  diffsearch optimizer --task examples.optimizer_task:make_task --budget 16 --lr-grid 1e-3,1e-2
  diffsearch optimizer --workers 4 --storage postgresql://user@host/db --study big   # then, elsewhere:
  diffsearch worker --study big --storage postgresql://user@host/db
"""


def add_parser(subparsers, parser_class, formatter, help_text: str) -> None:
    p = subparsers.add_parser("optimizer", help=help_text, description=DESCRIPTION, formatter_class=formatter)
    p.add_argument(
        "--task",
        default="toy2d-moons",
        help=f"search task: {', '.join(TASKS)}, or module:factory (a training of your own, see above)",
    )
    p.add_argument("--searcher", default="mct", help=f"one of: {', '.join(TREE_SEARCHERS)}")
    p.add_argument(
        "--budget", type=int, default=128, help="trained candidates (duplicates and rejected programs do not count)"
    )
    p.add_argument("--levels", type=int, default=4, help="mct: levels of the traversal")
    p.add_argument("--max-length", type=int, default=10, help="tokens per program (super-tree depth)")
    p.add_argument(
        "--transfer",
        help=f"re-train the top rules and the baselines on this task too: {', '.join(TASKS)}, or module:factory",
    )
    p.add_argument("--top", type=int, default=3, help="discovered rules shown, transferred and plotted")
    p.add_argument(
        "--baselines",
        default=",".join(baseline_names()),
        help="hand-designed optimizers trained for the leaderboard (comma list, or none)",
    )
    p.add_argument("--scale", type=float, default=1.0, help="multiply the tasks' training steps")
    p.add_argument(
        "--matrix-ops",
        action="store_true",
        help="grow the matrix operators too: orth (Muon's Newton-Schulz orthogonalisation), rownorm, "
        "colnorm, and Muon's momentum mn; orth(mn) is Muon's rule (--start-from Muon starts there)",
    )
    p.add_argument(
        "--promote",
        default="",
        metavar="FACTORS",
        help="comma list of increasing length factors (e.g. 4,10): re-train the search's best rules at "
        "these multiples of the task's length (each rung keeps the best quarter, at least --top) "
        "and rank everything by the longest run; see above",
    )
    p.add_argument(
        "--score",
        default="loss",
        help="what a rule is judged on: " + "; ".join(f"{k}: {e.description}" for k, e in SCORES.items()),
    )
    p.add_argument(
        "--start-from",
        default="",
        metavar="NAMES",
        help="evolution: hand-designed rules (comma list, e.g. Adam or Adam,Lion; Muon = orth(mn) with "
        "--matrix-ops) that open the first population, as the Lion search starts from AdamW; they are "
        "not listed as discoveries",
    )
    p.add_argument(
        "--lr-grid",
        default="decade",
        help="learning rates the proxy runs try for every rule: "
        "'decade' (1e-5, 1e-4, ..., 1; the reference's), 'half-decade' (1e-5, 3e-5, 1e-4, ..., 1; "
        "twice the proxy runs) or a comma list such as 1e-4,3e-4,1e-3",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the searcher and of every training")
    p.add_argument("--study", help="study name (default: optimizer-<task>-<searcher>)")
    p.add_argument(
        "--storage", help="Optuna storage URL or a journal file ending in .log (default: sqlite file in --out)"
    )
    p.add_argument("--out", help="run directory for results.json and loss_curves.png (default: runs/<study>)")
    add_worker_arguments(p, "training candidate rules", "diffsearch worker")
    add_trial_timeout(p, "a rule's training")
    p.add_argument(
        "--check",
        metavar="EXPR",
        help="do not search: parse EXPR, print its canonical form and the rejection tests' verdict",
    )
    p.add_argument("--json", action="store_true", help="print results.json to stdout instead of tables")
    p.set_defaults(handler=main)


def check(expr: str) -> int:
    from diffsearch.spaces.update_rule_space import UpdateRuleSpace, formula
    from diffsearch.spaces.update_rules import to_text, violations

    program = parse(expr)
    space = UpdateRuleSpace(max_length=max(10, len(program)))
    cosine, _ = space.descent_cosine(program)
    verdict = space.check(program)
    print(
        json.dumps(
            {
                "expr": to_text(program),
                "formula": formula(program),
                "tokens": list(program),
                "key": space.key(program),
                "descent_cosine": cosine,
                "redundant": violations(program),
                "rejected": verdict,
            },
            indent=2,
        )
    )
    return 0


def main(args: argparse.Namespace) -> int:
    if args.check:
        return check(args.check)
    baselines = (
        ()
        if args.baselines.strip() in ("", "none")
        else tuple(b.strip() for b in args.baselines.split(",") if b.strip())
    )
    options = OptimizerOptions(
        task=args.task,
        searcher=args.searcher,
        budget=args.budget,
        levels=args.levels,
        max_length=args.max_length,
        transfer=args.transfer,
        top=args.top,
        baselines=baselines,
        seed=args.seed,
        scale=args.scale,
        study=args.study,
        storage=args.storage,
        out=args.out,
        workers=args.workers,
        heartbeat=args.heartbeat,
        trial_timeout=args.trial_timeout,
        score=args.score,
        lr_grid=args.lr_grid,
        start_from=tuple(n.strip() for n in args.start_from.split(",") if n.strip()),
    )
    try:
        promote = tuple(float(f) for f in args.promote.split(",") if f.strip())
    except ValueError:
        raise UsageError(f"--promote takes a comma list of length factors such as 4,10, not {args.promote!r}") from None
    options.promote, options.matrix_ops = promote, args.matrix_ops
    console = Console(stderr=True)
    with best_so_far_bar(console) as update:
        results = run_optimizer(options, progress=update, log=console.print)
    return finish(results, args.json, print_summary)


def _num(value, fmt=".4f") -> str:
    return "-" if value is None else format(value, fmt)


RULE_HEADER = "update rule (w -= lr * rule)"


def _rule_text(r: dict) -> str:
    return r["expr"] + (f"; wd {r['weight_decay']:g}" if r["weight_decay"] else "")


def leaderboard(results: dict, width: int) -> tuple[Table, list[str]]:
    """The leaderboard at most ``width`` columns wide with one line per row, and its notes: a torch baseline's
    description (prose, not a rule) and, when the terminal is too narrow, any rule too long for its column are
    shown as [n] and written in full under the table (results.json keeps every text as it is)."""
    o = results["options"]
    transfer = o.get("transfer")
    what = (
        "score its train() returns"
        if is_user_task(o["task"])
        else "PRDC loss of samples"
        if o.get("score") == "prdc"
        else "loss after training"
    )
    rows = results["leaderboard"]
    promoted = bool(o.get("promote")) and rows and "short_score" in rows[0]
    length = f"{o['task']}, {rows[0]['steps']} steps" if promoted else o["task"]
    headers = (
        ("rank", "optimizer", RULE_HEADER, "lr", length)
        + ((f"{rows[0]['short_steps']} steps",) if promoted else ())
        + (("lr", transfer) if transfer else ())
    )
    body = []
    for i, r in enumerate(rows, 1):
        name = f"[bold]{r['name']}[/bold]" if r["kind"] == "rule" else r["name"]
        cells = [str(i), name, _rule_text(r), _num(r["lr"], "g"), _num(r["score"])]
        if promoted:
            cells.append(_num(r.get("short_score")))
        if transfer:
            cells += [_num(r.get("transfer_lr"), "g"), _num(r.get("transfer_score"))]
        body.append(cells)
    rule_col = headers.index(RULE_HEADER)
    texts = [cells[rule_col] for cells in body]
    noted = [r["kind"] != "rule" and r["name"] in TORCH_BASELINES for r in rows]

    def build(widths: list[int | None] | None, rule_header: str = RULE_HEADER) -> Table:
        table = Table(title=f"update rules on {o['task']} ({what}, lower is better)")
        for k, column in enumerate(headers):
            text = k in (rule_col - 1, rule_col)  # optimizer and rule: text, left-aligned
            table.add_column(
                rule_header if k == rule_col else column,
                justify="left" if text else "right",
                overflow="fold",
                width=widths[k] if widths else None,
            )
        n = 0
        for cells, text, note in zip(body, texts, noted):
            n += note
            table.add_row(*cells[:rule_col], f"[{n}]" if note else text, *cells[rule_col + 1 :])
        return table

    table = build(None)
    if Console(width=10_000).measure(table).maximum > width:
        # too wide: every other column keeps its values' width (a header wraps, a long header word is folded)
        # and the rule column gets what is left; the rules that do not fit it become notes
        fixed = [
            max(
                max((Text.from_markup(cells[k]).cell_len for cells in body), default=1),
                min(12, max(map(len, headers[k].split()))),
            )
            for k in range(len(headers))
        ]
        borders = len(headers) + 1 + 2 * len(headers)  # a vertical line between columns and a space either side
        room = max(4, width - borders - (sum(fixed) - fixed[rule_col]))
        noted = [note or len(text) > room for text, note in zip(texts, noted)]
        kept = [len(text) for text, note in zip(texts, noted) if not note]
        fixed[rule_col] = max([len("rule"), len(f"[{sum(noted)}]")] + kept)
        table = build(fixed, "rule")  # its meaning goes under the table: a long header would wrap into many lines
    notes = [
        f"[{n}] {r['name']}: {text}"
        for n, (r, text) in enumerate(((r, t) for r, t, note in zip(rows, texts, noted) if note), 1)
    ]
    if table.columns[rule_col].header == "rule":
        notes.insert(0, "rule: each step w -= lr * rule")
    if any(r["weight_decay"] for r in rows):
        notes.append("wd: decoupled weight decay, w <- w * (1 - lr * wd) each step as in AdamW")
    return table, notes


def print_summary(results: dict, console: Console) -> None:
    table, notes = leaderboard(results, console.width)
    console.print(table)
    for note in notes:
        console.print(note, markup=False, highlight=False)
    s = results["search"]
    console.print(
        f"search: {s['evaluated']} trained, {s['duplicates']} duplicates and {s['rejected']} rejected "
        f"programs skipped ({s['proposed']} proposed); {s['replayed_from_storage']} taken from the "
        f"storage; the untrained model scores {results.get('initial_score', results['initial_loss']):.4f}"
    )
    for rung in results.get("promotion", []):
        console.print(
            f"promoted: {rung['trained']} rules trained {rung['steps']} steps ({rung['factor']:g}x); "
            f"best {rung['best']}"
        )
    if results.get("mct_path"):
        console.print(f"mct path: {results['mct_path']}")
    console.print(
        f"elapsed {results['elapsed_seconds'] / 60:.1f} min; results: {results['results_file']}"
        + (f"; plot: {results['plot']}" if results.get("plot") else "")
    )
    console.print(f"ledger: {results['storage']} (study {results['study']})")
