"""``diffsearch report``: read any study (finished or running) back and explain it: a table, and an HTML page.

The table: what the value is, the trials by state, the best trial (or, for a ``.repeats`` study, each role's
mean and spread), parameter importance over the params every complete trial has (fANOVA, seed 0; the
conditional params are named as left out), and the trials lost with a dead worker. The page
(``<out>/<study>.html``): the study's note, the same tables, the plots of ``optuna.visualization``
(history, importance, parallel coordinates, intermediate values; interactive with plotly, PNGs with
matplotlib otherwise) and the study's image artifacts.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # rich is imported when the table is printed
    from rich.console import Console

from diffsearch.run_files import write_atomic

DESCRIPTION = """\
Read a study back from its storage and explain it. Works on finished and running studies of any job:

  diffsearch report --study hparams-moons-tpe --storage sqlite:///runs/hparams-moons-tpe/study.db
  diffsearch report --study hparams-moons-tpe.repeats --storage sqlite:///runs/hparams-moons-tpe/study.db

Prints the table and writes <out>/<study>.html (plots and the study's images, one self-contained file).
"""


def add_parser(subparsers, parser_class, formatter, help_text: str) -> None:
    p = subparsers.add_parser("report", help=help_text, description=DESCRIPTION, formatter_class=formatter)
    p.add_argument("--study", required=True, help="study name")
    p.add_argument("--storage", required=True, help="Optuna storage URL or journal .log path")
    p.add_argument(
        "--out",
        help="folder of the HTML page (default: the storage's folder for a SQLite file or "
        "journal, else the current folder)",
    )
    p.add_argument("--artifact-dir", help="the run's artifact folder (default: <storage folder>/artifacts)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON instead of tables")
    p.set_defaults(handler=main)


def storage_folder(url: str) -> Path | None:
    """The folder of a SQLite file or journal log, where the run keeps its artifacts; None for a server."""
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///") :]).resolve().parent
    if "://" not in url:
        return Path(url).resolve().parent
    return None


def summarise(study) -> dict[str, Any]:
    """What the report says about ``study``, as plain data (also the --json output)."""
    from optuna.trial import TrialState

    from diffsearch.jobs.base import mean_std
    from diffsearch.ledger.dead_workers import LOST_ATTR, RETRY_OF_ATTR
    from diffsearch.ledger.importance import importance_or_none

    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    attrs = study.user_attrs
    states: dict[str, int] = {}
    for t in trials:
        # a worker's extra trial past the budget ends FAIL but never ran: not a failure a person should chase
        state = "SURPLUS" if "surplus" in t.user_attrs else t.state.name
        states[state] = states.get(state, 0) + 1
    summary: dict[str, Any] = {
        "study": study.study_name,
        "job": attrs.get("job"),
        "kind": attrs.get("kind") or ("repeats" if study.study_name.endswith(".repeats") else "search"),
        "metric": (study.metric_names or ["value"])[0],
        "direction": study.direction.name.lower(),
        "trials": len(trials),
        "states": states,
        "finished": bool(attrs.get("search_finished", False)),
    }
    retried_by = {t.user_attrs[RETRY_OF_ATTR]: t.number for t in trials if RETRY_OF_ATTR in t.user_attrs}
    summary["lost"] = [
        {"number": t.number, "reason": t.user_attrs[LOST_ATTR], "retried_by": retried_by.get(t.number)}
        for t in trials
        if LOST_ATTR in t.user_attrs
    ]
    summary["failed"] = [
        {"number": t.number, "reason": t.user_attrs["fail_reason"]} for t in trials if "fail_reason" in t.user_attrs
    ]
    if summary["kind"] == "repeats":
        roles: dict[str, list[float]] = {}
        for t in complete:
            roles.setdefault(str(t.user_attrs.get("role", "?")), []).append(t.value)
        summary["roles"] = {role: {"runs": len(v), **mean_std(v)} for role, v in roles.items()}
        summary["repeats_of"] = attrs.get("repeats_of")
        return summary
    if complete:
        best = (
            min(complete, key=lambda t: t.value)
            if study.direction.name == "MINIMIZE"
            else max(complete, key=lambda t: t.value)
        )
        summary["best"] = {"number": best.number, "value": best.value, "params": best.params}
    summary["importance"] = importance_or_none(study)
    return summary


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def print_summary(summary: dict[str, Any], console) -> None:
    from rich.table import Table

    from diffsearch.cli.progress import params_table

    finished = "finished" if summary["finished"] else "running or stopped"
    console.print(
        f"study {summary['study']} ({summary['job'] or 'no job'}, {summary['kind']}, {finished}): "
        f"value = {summary['metric']}, {summary['direction']}d"
    )
    console.print("trials: " + ", ".join(f"{n} {s.lower()}" for s, n in sorted(summary["states"].items())))
    if summary["states"].get("SURPLUS"):
        console.print("(surplus: started by a worker after others had met the budget, ended at once, never run)")
    if summary.get("roles"):
        table = Table(
            title=f"re-trainings of fixed configs (of {summary.get('repeats_of')}): mean ± std over training seeds"
        )
        for column in ("role", "runs", summary["metric"]):
            table.add_column(column, justify="left" if column == "role" else "right")
        for role, r in summary["roles"].items():
            table.add_row(role, str(r["runs"]), f"{r['mean']:.4f} ± {r['std']:.4f}")
        console.print(table)
    if summary.get("best"):
        best = summary["best"]
        console.print(
            params_table(
                f"best trial {best['number']}: {summary['metric']} {best['value']:.4f}", best["params"], "param", _fmt
            )
        )
    print_importance(summary.get("importance"), console)
    for lost in summary["lost"]:
        retry = f" -> retried as trial {lost['retried_by']}" if lost["retried_by"] is not None else ""
        console.print(f"trial {lost['number']} lost: {lost['reason']}{retry}")
    if summary["failed"]:
        console.print(
            f"{len(summary['failed'])} failed trial(s); first: trial {summary['failed'][0]['number']}: "
            f"{summary['failed'][0]['reason']}"
        )


# ---- the HTML page ---------------------------------------------------------------------------------------


def _figures(study, importance: dict[str, Any]) -> list[tuple[str, str]]:
    """(title, HTML fragment) per plot that applies; plotly when installed, matplotlib PNGs otherwise."""
    import optuna

    from diffsearch.ledger.importance import Precomputed

    params = list(importance.get("params", []))
    try:
        import plotly  # noqa: F401

        vis, interactive = optuna.visualization, True
    except ImportError:
        vis, interactive = optuna.visualization.matplotlib, False
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    wanted: list[tuple[str, Any]] = []
    if complete:
        wanted.append(("history", lambda: vis.plot_optimization_history(study)))
    repeats = study.user_attrs.get("kind") == "repeats" or study.study_name.endswith(".repeats")
    if importance.get("importances") and not repeats:
        evaluator = Precomputed(importance["importances"])
        wanted.append(
            (
                f"importance over the params every complete trial has ({importance['evaluator']})",
                lambda: vis.plot_param_importances(study, params=params, evaluator=evaluator),
            )
        )
        wanted.append(("parallel coordinates", lambda: vis.plot_parallel_coordinate(study, params=params)))
    if any(t.intermediate_values for t in study.get_trials(deepcopy=False)):
        wanted.append(("intermediate values", lambda: vis.plot_intermediate_values(study)))
    fragments, first = [], True
    for title, make in wanted:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                figure = make()
            except Exception as exc:  # a plot that does not apply to this study: say so, draw the rest
                fragments.append((title, f"<p>not drawn: {html.escape(str(exc))}</p>"))
                continue
        if interactive:
            fragments.append((title, figure.to_html(full_html=False, include_plotlyjs=first)))
            first = False
        else:
            from matplotlib import pyplot as plt

            buffer = io.BytesIO()
            figure.figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
            plt.close(figure.figure)
            fragments.append((title, _img(buffer.getvalue(), "image/png", title)))
    return fragments


def _img(data: bytes, mimetype: str, alt: str) -> str:
    return (
        f'<img alt="{html.escape(alt)}" style="max-width:100%" '
        f'src="data:{mimetype};base64,{base64.b64encode(data).decode()}">'
    )


def _artifacts(study, artifact_dir: Path | None) -> list[tuple[str, str]]:
    """The study's image artifacts as (file name, <img>); others listed by name."""
    import optuna

    metas = optuna.artifacts.get_all_artifact_meta(study)
    if not metas:
        return []
    if artifact_dir is None or not artifact_dir.is_dir():
        return [
            (m.filename, f"<p>not found: no artifact folder {artifact_dir} (use --artifact-dir)</p>") for m in metas
        ]
    store = optuna.artifacts.FileSystemArtifactStore(str(artifact_dir))
    shown = []
    for meta in metas:
        try:
            with store.open_reader(meta.artifact_id) as reader:
                data = reader.read()
        except Exception:
            shown.append((meta.filename, f"<p>missing from {html.escape(str(artifact_dir))}</p>"))
            continue
        if meta.mimetype.startswith("image/"):
            shown.append((meta.filename, _img(data, meta.mimetype, meta.filename)))
        else:
            shown.append((meta.filename, f"<p>{meta.mimetype}, {len(data)} bytes</p>"))
    return shown


def write_page(study, summary: dict[str, Any], path: Path, artifact_dir: Path | None) -> Path:
    from rich.console import Console

    imp = summary.get("importance") or {}
    text = io.StringIO()
    print_summary(summary, Console(file=text, width=110, color_system=None))
    note = study.user_attrs.get("note", "")
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(study.study_name)}</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}pre{white-space:pre-wrap;"
        "background:#f6f6f6;padding:8px}</style></head><body>",
        f"<h1>{html.escape(study.study_name)}</h1>",
    ]
    if note:
        parts.append(f"<h2>the study's note</h2><pre>{html.escape(note)}</pre>")
    parts.append(f"<h2>summary</h2><pre>{html.escape(text.getvalue())}</pre>")
    for title, fragment in _figures(study, imp):
        parts.append(f"<h2>{html.escape(title)}</h2>{fragment}")
    for name, fragment in _artifacts(study, artifact_dir):
        parts.append(f"<h2>artifact: {html.escape(name)}</h2>{fragment}")
    parts.append("</body></html>")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, "\n".join(parts))
    return path


def main(args: argparse.Namespace) -> int:
    from rich.console import Console

    from diffsearch.errors import UsageError
    from diffsearch.ledger import load_study, open_storage

    if args.storage.startswith("sqlite:///") and not Path(args.storage[len("sqlite:///") :]).is_file():
        raise UsageError(f"no database file at {args.storage}")
    if "://" not in args.storage and not Path(args.storage).is_file():
        raise UsageError(f"no journal file at {args.storage}")
    storage = open_storage(args.storage)
    study = load_study(storage, args.study)
    if study is None:
        import optuna

        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise UsageError(f"no study {args.study!r} in {args.storage}; it holds: {', '.join(names) or 'none'}")
    summary = summarise(study)
    folder = storage_folder(args.storage)
    artifact_dir = Path(args.artifact_dir) if args.artifact_dir else (folder / "artifacts" if folder else None)
    out = Path(args.out) if args.out else (folder or Path("."))
    page = write_page(study, summary, out / f"{args.study}.html", artifact_dir)
    summary["page"] = str(page)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
        return 0
    console = Console()
    print_summary(summary, console)
    console.print(f"page: {page}")
    return 0


def print_importance(imp: dict | None, console: Console) -> None:
    """The importance table (``diffsearch.ledger.importance``) and the params it left out, and why."""
    from rich.table import Table

    if imp and imp.get("importances"):
        few = " - few trials: read with care" if imp["trials"] < 10 else ""
        table = Table(title=f"parameter importance over the {imp['trials']} complete trials ({imp['evaluator']}){few}")
        table.add_column("param")
        table.add_column("importance", justify="right")
        for key, value in imp["importances"].items():
            table.add_row(key, f"{value:.3f}")
        console.print(table)
    if imp and imp.get("left_out_conditional"):
        console.print("left out (conditional: only some trials have them): " + ", ".join(imp["left_out_conditional"]))
    if imp and imp.get("left_out_constant"):
        console.print("left out (one value in every trial): " + ", ".join(imp["left_out_constant"]))
