"""``diffsearch sweep``: arguments and printing for tuning any training program from a sweep file."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from diffsearch.cli.parser import add_worker_arguments
from diffsearch.cli.progress import best_so_far_bar, finish, params_table

DESCRIPTION = """\
Tune any training program, unchanged. The sweep file follows W&B's sweep-file convention (program,
command, method, metric, parameters, early_terminate), plus `when:` for conditional parameters:

  program: train_text_to_image_lora.py   # relative to the sweep file
  method: tpe                            # tpe, random, gp, generative, grid (W&B's bayes runs gp)
  metric: {name: train_loss, goal: minimize}   # source: auto (default), stdout, tensorboard or wandb
  trials: 12                             # W&B's run_cap is accepted too
  parameters:
    learning_rate: {distribution: log_uniform_values, min: 1.0e-5, max: 1.0e-2}
    lr_scheduler: {values: [constant, cosine]}
    lr_warmup_steps: {distribution: int_uniform, min: 0, max: 50, when: {lr_scheduler: {not: constant}}}
    output_dir: {value: "${trial_dir}"}  # each trial's own folder: its checkpoints and logs
  early_terminate: {type: hyperband, min_iter: 1, eta: 3}
  preload: [torch, diffusers]            # optional: imported once per worker, trials forked from it

Each trial runs `python train.py --learning_rate=... --lr_scheduler=...` (only the active parameters)
in a folder of its own, <out>/trials/<number> (${trial_dir}), and reads its metric while it runs, from
whichever of these reports it first (or the one metric.source names):
  - stdout: a JSON line such as {"step": 8, "fid": 123.4} (what diffsearch.report(step=8, fid=123.4)
    prints);
  - TensorBoard: the event files it writes under its folder (or metric.path): accelerate's default
    tracker, SummaryWriter, Lightning; a tag is a metric, its step the step;
  - wandb: the program runs offline with the trial's values in wandb.config (as under W&B's agent) and
    its wandb.log values are read from its run (nested keys as val.loss; _step the step).
early_terminate (successive halving, Hyperband) stops programs at their reports; the trial's value is
the metric's last report. A non-zero exit, --trial-timeout, a metric never reported (the reason says
where it looked) or not finite fails the trial and the sweep goes on. Logs: stdout.log, stderr.log in
the trial's folder.

Budgets forgive a broken program: when the first 3 trials fail the same way, the sweep stops and says
why; after a fix, the same command runs again the trials that failed for the program's own reasons
(exit code, no metric): they do not count against the budget; --trials N tops the study up to N.

Every trial is an Optuna trial in one storage (default: a SQLite file in --out): rerunning the same
command resumes the sweep and repeats no finished trial; `diffsearch worker --study NAME --storage URL`
joins it from another machine (the program must exist at the same path there).

examples:
  diffsearch sweep sweep.yaml
  diffsearch sweep sweep.yaml --trials 50 --searcher random --workers 4 --gpus 0,1,2,3
  diffsearch sweep sweep.yaml --trial-timeout 600 --storage postgresql://user@host/db --study fid-sweep
"""


def add_parser(subparsers, parser_class, formatter, help_text: str) -> None:
    p = subparsers.add_parser("sweep", help=help_text, description=DESCRIPTION, formatter_class=formatter)
    p.add_argument("sweep_file", metavar="SWEEP.yaml", help="the sweep file")
    p.add_argument(
        "--trials",
        type=int,
        help="finished trials the study should hold (default: the file's "
        "trials or run_cap, else 20; grid: every point)",
    )
    p.add_argument(
        "--searcher",
        help="overrides the file's method: a searcher of `diffsearch list` (tpe, random, gp, generative) or grid",
    )
    add_worker_arguments(p, "running trials")
    p.add_argument(
        "--gpus",
        help="devices for the programs, e.g. 0,1: worker i runs its trials with "
        "CUDA_VISIBLE_DEVICES=gpus[i %% len(gpus)]",
    )
    p.add_argument(
        "--trial-timeout",
        type=float,
        metavar="SECONDS",
        help="a program still running after this long is stopped and its trial failed",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the searcher")
    p.add_argument("--study", help="study name (default: the file's name, else sweep-<program>-<method>)")
    p.add_argument(
        "--storage",
        help="Optuna storage URL (sqlite:///x.db, postgresql://...) or a journal "
        "file ending in .log (default: sqlite file in --out)",
    )
    p.add_argument("--out", help="run directory for results.json and the trials' logs (default: runs/<study>)")
    p.add_argument("--json", action="store_true", help="print results.json to stdout instead of tables")
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    from diffsearch.jobs.sweep import SweepOptions, run_sweep

    options = SweepOptions(
        file=args.sweep_file,
        searcher=args.searcher,
        trials=args.trials,
        workers=args.workers,
        gpus=args.gpus,
        trial_timeout=args.trial_timeout,
        seed=args.seed,
        study=args.study,
        storage=args.storage,
        out=args.out,
        heartbeat=args.heartbeat,
    )
    console = Console(stderr=True)
    with best_so_far_bar(console) as update:
        results = run_sweep(options, progress=update, log=console.print)
    code = finish(results, args.json, print_summary)
    ran_unranked = results.get("metric") is None and results["counts"]["complete"] > 0  # a grid without a metric
    if results.get("best") is None and not ran_unranked:  # nothing to use: say why (also under --json), and fail
        Console(stderr=True).print(f"diffsearch: {results.get('note') or 'no trial completed'}")
        return 1
    return code


SHOWN_TRIALS = 10  # the best complete trials in the table
SHOWN_FAILURES = 5  # failed trials named one by one


def _value(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def best_trials_table(shown: list[dict], complete: int, metric: str, width: int) -> Table:
    """A trial per row; when that is too wide for the terminal (many parameters), a parameter per row and as
    many of the best trials as fit (the rest are in results.json)."""
    names = list(dict.fromkeys(name for t in shown for name in t["params"]))
    cells = {name: [_value(t["params"][name]) if name in t["params"] else "-" for t in shown] for name in names}
    table = Table(title=f"the {len(shown)} best of {complete} complete trials")
    for column in ("trial", metric, *names):
        table.add_column(column, justify="right")
    for i, t in enumerate(shown):
        table.add_row(str(t["number"]), f"{t['value']:.6g}", *[cells[name][i] for name in names])
    measure = Console(width=10_000).measure
    if measure(table).maximum <= width:
        return table
    for k in range(len(shown), 0, -1):
        table = Table(
            title=f"the {k} best of {complete} complete trials" + (" (more in results.json)" if k < len(shown) else "")
        )
        table.add_column("trial", no_wrap=True)
        for t in shown[:k]:
            table.add_column(str(t["number"]), justify="right", no_wrap=True)
        table.add_row(metric, *[f"{t['value']:.6g}" for t in shown[:k]])
        for name in names:
            table.add_row(name, *cells[name][:k])
        if measure(table).maximum <= width:
            break
    return table


def print_summary(results: dict, console: Console) -> None:
    metric, goal = results["metric"], results["goal"]
    best = results.get("best")
    if best:
        console.print(
            params_table(
                f"best: trial {best['number']}, {metric} {best['value']:.6g}", best["params"], "parameter", _value
            )
        )
    complete = [t for t in results["trials"] if t["state"] == "COMPLETE"]
    complete.sort(key=lambda t: t["value"], reverse=goal == "maximize")
    if complete and metric is not None:
        console.print(best_trials_table(complete[:SHOWN_TRIALS], len(complete), metric, console.width))
    failed = [t for t in results["trials"] if t["state"] == "FAIL"]
    for t in failed[:SHOWN_FAILURES]:
        console.print(f"trial {t['number']} failed: {t['fail_reason']}")
    if len(failed) > SHOWN_FAILURES:
        console.print(f"... and {len(failed) - SHOWN_FAILURES} more failed trials (results.json)")
    counts = results["counts"]
    console.print(
        f"trials: {counts['complete']} complete, {counts['pruned']} pruned, {counts['failed']} failed"
        + (f", {counts['cut_short']} cut short (not counted)" if counts["cut_short"] else "")
        + (f", {counts['not_counted']} failed in an earlier run (not counted)" if counts.get("not_counted") else "")
        + f" of a budget of {results['budget']}"
    )
    if results.get("halted") and results.get("halted") != results.get("note"):
        console.print(results["halted"])
    if results.get("note"):
        console.print(results["note"])
    console.print(
        f"elapsed {results['elapsed_seconds'] / 60:.1f} min; results: {results['results_file']}"
        + (f"; logs: {results['logs']}" if results.get("logs") else "")
    )
    console.print(f"ledger: {results['storage']} (study {results['study']})")
