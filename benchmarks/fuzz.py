"""Fuzzing what users type and hand us, with Hypothesis: every input ends in success or one line, exit 2.

Surfaces (each input runs in this process, no subprocess):

- ``cli``: option values of every job (hparams, optimizer, prompt, noise, schedule, sweep, worker, report) through
  ``diffsearch.cli.main.main``, up to the point where the job would start (its options resolved and
  checked: the run itself is replaced by a marker, so an accepted input costs nothing);
- ``data``: ``--dataset FILE`` files (.npy / .csv: bad shapes, NaN, infinities, empty, text, bytes),
  loaded as the hparams job loads them;
- ``prompts``: ``--prompts FILE`` files (empty lines, comments, very long lines, non-UTF-8 bytes);
- ``sweep``: sweep files, valid ones and mutations of them (YAML text and structure), read and checked by
  ``read_sweep_file`` / ``parse_sweep`` as ``diffsearch sweep`` does.

An input passes when it is accepted, or refused with exit code 2 and one line on stderr, and nothing was
written in the working folder on refusal (no file; an empty run folder may be left). Anything else (a traceback) is a failure, shrunk by Hypothesis
to a small input and printed.

    python benchmarks/fuzz.py                 # 10,000 inputs per surface (about 10-20 minutes on 2 cores)
    python benchmarks/fuzz.py --count 500 --surface sweep
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffsearch.errors import UsageError, one_line  # noqa: E402


class Accepted(Exception):
    """The job would start here: its options were resolved and checked."""


# ---- what a user may type ------------------------------------------------------------------------------
WORDS = st.sampled_from(
    [
        "moons",
        "tpe",
        "random",
        "gp",
        "generative",
        "mct",
        "evolution",
        "gpo",
        "gpo+es",
        "toy2d-moons",
        "digits",
        "antonym",
        "synonym",
        "sh",
        "hyperband",
        "none",
        "tiny",
        "enhance",
        "attack",
        "clip",
        "ddim",
        "ddpm",
        "cpu",
        "auto",
        "float32",
        "wordnet",
        "Adam,AdamW",
        "decade",
        "4,10",
        "os:getcwd",
        "json:loads",
        "nosuch:thing",
        ":",
        "a:b:c",
        "x.npy",
        "x.csv",
        "runs",
        "sqlite:///x.db",
        "x.log",
        "postgresql://nobody@127.0.0.1:1/x",
        "best-of-n",
        "zero-order",
        "paths",
        "particles",
        "gradient",
        "fashion",
        "tiny-sdxl",
        "tiny-sd3",
        "dpm++",
        "euler",
        "teacher",
        "fid",
        "pickscore",
        "hpsv2",
        "clip,pickscore",
        "z-score",
        "rank",
        "bfloat16",
        "float16",
        "fashion-mnist",
        "mnist",
        "x.pt",
        "x.safetensors",
        "prompts.txt",
    ]
)
NUMBERS = st.one_of(
    st.integers(-10, 10**7).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["0", "-0", "1e308", "nan", "inf", "-inf", "1_000", "0x10", "", " "]),
)
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)
VALUE = st.one_of(WORDS, NUMBERS, TEXT)

# options the jobs take (a value follows each) and flags that take none: read from each job's own parser,
# so an option added later is fuzzed too (``--out`` is left out: it would write outside the working folder)
JOBS = ["hparams", "optimizer", "prompt", "noise", "schedule", "sweep", "worker", "report"]
NOT_FUZZED = {"--out"}


def _options(job: str) -> tuple[list[str], list[str]]:
    import argparse

    from diffsearch.cli.main import build_parser

    parser = build_parser(job)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[job]
    takes_value, flags = [], []
    for action in sub._actions:
        names = [n for n in action.option_strings if n.startswith("--") and n not in NOT_FUZZED]
        if names:
            (flags if action.nargs == 0 else takes_value).append(names[0])
    return sorted(takes_value), sorted(flags)


OPTIONS = {job: _options(job)[0] for job in JOBS}
CLI_COMMANDS = list(JOBS)  # the commands the cli surface draws from (``--command`` narrows it)
FLAGS = sorted({flag for job in JOBS for flag in _options(job)[1]})


@st.composite
def command_lines(draw) -> list[str]:
    job = draw(st.sampled_from(sorted(CLI_COMMANDS)))
    argv = [job]
    if job in ("prompt", "noise") and draw(st.integers(0, 4)):
        argv.append(draw(st.one_of(TEXT, st.just("a red boat"))))
    if job == "sweep":
        argv.append(draw(st.sampled_from(["sweep.yaml", "missing.yaml", "."])))
    for _ in range(draw(st.integers(0, 5))):
        if draw(st.integers(0, 9)) == 0:
            argv.append(draw(st.sampled_from(FLAGS)))
        else:
            argv += [draw(st.sampled_from(OPTIONS[job])), draw(VALUE)]
    return argv


# ---- files a user may hand us ------------------------------------------------------------------------
ARRAYS = st.one_of(
    st.tuples(st.integers(0, 60), st.integers(0, 6)).map(lambda s: np.zeros(s)),
    st.integers(0, 40).map(lambda n: np.ones(n)),
    st.tuples(st.integers(1, 5), st.integers(1, 5), st.integers(1, 5)).map(lambda s: np.ones(s)),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=0, max_size=60).map(
        lambda xs: np.array(xs).reshape(-1, 2) if len(xs) % 2 == 0 else np.array(xs)
    ),
    st.lists(st.text(max_size=5), max_size=10).map(np.array),
    st.just(np.array(3.0)),
)


@st.composite
def data_files(draw) -> tuple[str, bytes]:
    kind = draw(st.integers(0, 3))
    if kind == 0:  # a numpy array of any shape or content
        buffer = io.BytesIO()
        np.save(buffer, draw(ARRAYS), allow_pickle=False)
        return "data.npy", buffer.getvalue()
    if kind == 1:  # a CSV of numbers, words, NaN and ragged rows
        cell = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), WORDS, st.just(""))
        rows = draw(st.lists(st.lists(cell, max_size=5), max_size=30))
        head = draw(st.sampled_from(["", "x,y\n", "# comment\n"]))
        return "data.csv", (head + "\n".join(",".join(r) for r in rows)).encode()
    name = draw(st.sampled_from(["data.npy", "data.csv"]))
    return name, draw(st.binary(max_size=300))  # anything at all


@st.composite
def prompt_files(draw) -> bytes:
    line = st.one_of(
        TEXT, st.just(""), st.just("# a comment"), st.just("   "), st.integers(1, 5000).map(lambda n: "word " * n)
    )
    text = "\n".join(draw(st.lists(line, max_size=12))).encode("utf-8")
    if draw(st.booleans()):
        text += draw(st.binary(max_size=40))  # not UTF-8, perhaps
    return text


VALID_SWEEP = {
    "program": "train.py",
    "method": "random",
    "metric": {"name": "loss", "goal": "minimize"},
    "run_cap": 5,
    "parameters": {
        "lr": {"distribution": "log_uniform_values", "min": 1e-5, "max": 1e-1},
        "batch": {"values": [16, 32, 64]},
        "layers": {"min": 1, "max": 4},
        "opt": {"value": "adam"},
        "arch": {"parameters": {"width": {"values": [8, 16]}}},
    },
    "early_terminate": {"type": "hyperband", "min_iter": 2, "eta": 2},
    "command": ["${env}", "${interpreter}", "${program}", "${args}"],
}
YAML_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**6),
    st.floats(allow_nan=True),
    TEXT,
    st.sampled_from(
        [
            "grid",
            "bayes",
            "random",
            "uniform",
            "log_uniform",
            "q_uniform",
            "int_uniform",
            "categorical",
            "normal",
            "beta",
            "hyperband",
            "minimize",
            "maximize",
            "${args_json}",
            "${args_no_hyphens}",
        ]
    ),
)
YAML_VALUE = st.recursive(
    YAML_LEAF,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
    max_leaves=12,
)


@st.composite
def sweep_files(draw) -> bytes:
    """A valid sweep with a few of its values (at any depth) replaced, removed or added; or broken text."""
    config = yaml.safe_load(yaml.safe_dump(VALID_SWEEP))
    for _ in range(draw(st.integers(0, 4))):
        node, path = config, []
        while isinstance(node, dict) and node and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(node, key=str)))
            path.append(key)
            if not isinstance(node[key], dict):
                break
            node = node[key]
        parent = config
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.integers(0, 2))
        if path and action == 0:
            del parent[path[-1]]
        elif path and action == 1:
            parent[path[-1]] = draw(YAML_VALUE)
        elif isinstance(parent, dict):
            parent[
                draw(
                    st.sampled_from(
                        [
                            "method",
                            "metric",
                            "parameters",
                            "run_cap",
                            "name",
                            "program",
                            "command",
                            "early_terminate",
                            "description",
                            "extra",
                        ]
                    )
                )
            ] = draw(YAML_VALUE)
    text = yaml.safe_dump(config, allow_unicode=True)
    cut = draw(st.integers(0, 6))
    if cut == 0:
        text = text[: draw(st.integers(0, len(text)))]  # cut short
    elif cut == 1:
        text = text.replace(":", draw(st.sampled_from(["", "::", ": [", "\t"])), 1)  # broken YAML
    raw = text.encode("utf-8")
    if cut == 2:
        raw += draw(st.binary(max_size=20))
    return raw


# ---- one input ------------------------------------------------------------------------------------
class Outcome:
    def __init__(self) -> None:
        self.inputs = self.accepted = self.refused = 0
        self.failures: list[str] = []
        self.by_command: dict[str, int] = {}  # cli: inputs per command


def _refuse_or_accept(call: Callable[[], Any], folder: Path, outcome: Outcome, what: str) -> None:
    """Run ``call``: accepted (returns 0 or raises Accepted), or refused (2, or UsageError) in one line
    with nothing written in ``folder`` beyond what was there; anything else is a failure."""
    before = _files(folder)
    stderr = io.StringIO()
    outcome.inputs += 1
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            code = call()
    except Accepted:
        code = 0
    except SystemExit as exc:  # argparse: --help (0) or a bad option (2)
        code = exc.code
    except UsageError as exc:
        stderr.write(f"diffsearch: error: {one_line(str(exc))}\n")  # as the CLI prints it
        code = 2
    except Exception as exc:  # a traceback: what the fuzzer hunts for
        outcome.failures.append(f"{what}: {type(exc).__name__}: {exc}")
        raise
    lines = stderr.getvalue().strip().splitlines()
    if code == 2:
        outcome.refused += 1
        after = _files(folder)
        assert len(lines) == 1, f"{what}: refusal is not one line: {lines}"
        assert after == before, f"{what}: refused but wrote {sorted(after - before)}"
    else:
        assert code == 0, f"{what}: exit code {code}"
        outcome.accepted += 1
    for name in set(os.listdir(folder)) - {"in"}:  # an accepted input may make its run folder
        path = folder / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def _files(folder: Path) -> set[str]:
    """The files under ``folder`` (an empty run folder made before a refusal holds nothing)."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if not p.is_dir()}


def _stop_before_running(monkeypatch_set: Callable[[Any, str, Any], None]) -> None:
    """Every job's ``run_job`` resolves the options (every check), then stops: nothing trains."""
    import diffsearch.jobs.hparams as hparams
    import diffsearch.jobs.noise as noise
    import diffsearch.jobs.optimizer as optimizer
    import diffsearch.jobs.prompt as prompt
    import diffsearch.jobs.schedule as schedule
    import diffsearch.jobs.sweep as sweep

    def resolve_only(job, options, *args, **kwargs):
        options.resolved()
        raise Accepted()

    for module in (hparams, optimizer, prompt, noise, schedule, sweep):
        monkeypatch_set(module, "run_job", resolve_only)


def _setattr(obj: Any, name: str, value: Any) -> None:
    setattr(obj, name, value)


def check_cli(argv: list[str], folder: Path, outcome: Outcome) -> None:
    from diffsearch.cli.main import main

    outcome.by_command[argv[0]] = outcome.by_command.get(argv[0], 0) + 1
    if argv[0] == "worker" or argv[0] == "report":  # they open the storage: keep them off real servers
        argv = [a if not a.startswith("postgresql") else "sqlite:///nowhere/x.db" for a in argv]
    _refuse_or_accept(lambda: main(argv), folder, outcome, f"cli {argv!r}")


def check_data(name: str, raw: bytes, folder: Path, outcome: Outcome) -> None:
    from diffsearch.jobs.hparams import HparamsOptions, _setup

    files = folder / "in"
    files.mkdir(exist_ok=True)
    path = files / name
    path.write_bytes(raw)

    def load() -> int:
        _setup(HparamsOptions(dataset=str(path), epochs=1, out=str(folder / "run")).resolved())
        return 0

    _refuse_or_accept(load, folder, outcome, f"data {name} {raw[:80]!r}")


def check_prompts(raw: bytes, folder: Path, outcome: Outcome) -> None:
    from diffsearch.jobs.prompt import PromptOptions

    files = folder / "in"
    files.mkdir(exist_ok=True)
    path = files / "prompts.txt"
    path.write_bytes(raw)

    def read() -> int:
        o = PromptOptions(prompts_file=str(path), model="tiny", clip="tiny", out=str(folder / "run")).resolved()
        o.prompt_list()
        return 0

    _refuse_or_accept(read, folder, outcome, f"prompts {raw[:80]!r}")


def check_sweep(raw: bytes, folder: Path, outcome: Outcome) -> None:
    from diffsearch.jobs.sweep import SweepOptions

    files = folder / "in"
    files.mkdir(exist_ok=True)
    (files / "train.py").write_text("print('loss=1')\n")
    path = files / "sweep.yaml"
    path.write_bytes(raw)

    def parse() -> int:
        SweepOptions(file=str(path), out=str(folder / "run")).resolved()
        return 0

    _refuse_or_accept(parse, folder, outcome, f"sweep {raw[:200]!r}")


SURFACES = {
    "cli": (command_lines(), check_cli),
    "data": (data_files(), lambda drawn, folder, outcome: check_data(*drawn, folder, outcome)),
    "prompts": (prompt_files(), check_prompts),
    "sweep": (sweep_files(), check_sweep),
}


def fuzz(surface: str, count: int, folder: Path, derandomize: bool = True, seed: int | None = None) -> Outcome:
    """Run ``count`` generated inputs of ``surface`` in ``folder`` (the working folder: nothing may be
    written there on refusal); raises on the first failure, shrunk."""
    strategy, check = SURFACES[surface]
    outcome = Outcome()
    cwd = os.getcwd()
    os.chdir(folder)
    try:

        @settings(
            max_examples=count,
            derandomize=derandomize,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            print_blob=False,
        )
        @given(strategy)
        def run(drawn) -> None:
            (folder / "in").mkdir(exist_ok=True)
            check(drawn, folder, outcome)

        if seed is not None:
            from hypothesis import seed as with_seed

            run = with_seed(seed)(run)
        run()
    finally:
        os.chdir(cwd)
    return outcome


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=10_000, help="generated inputs per surface")
    parser.add_argument("--surface", choices=sorted(SURFACES), action="append", help="(default: all)")
    parser.add_argument("--seed", type=int, default=20261207)
    parser.add_argument("--command", choices=JOBS, action="append", help="cli: only these commands")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "fuzz.md"))
    args = parser.parse_args()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    import warnings

    warnings.simplefilter("ignore")  # libraries' deprecation notes are not our refusals (the tests ignore them too)
    _stop_before_running(_setattr)
    rows = []
    if args.command:
        CLI_COMMANDS[:] = args.command
    for surface in args.surface or sorted(SURFACES):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            outcome = Outcome()
            try:
                outcome = fuzz(surface, args.count, Path(tmp), derandomize=False, seed=args.seed)
                failure = ""
            except Exception as exc:  # the shrunk failing input, for the table and the fix
                failure = str(exc).splitlines()[0][:300]
            seconds = time.perf_counter() - start
        label = f"{surface} ({' and '.join(args.command)} only)" if surface == "cli" and args.command else surface
        rows.append((label, outcome.inputs, outcome.accepted, outcome.refused, failure, seconds))
        print(
            f"{label}: {outcome.inputs} inputs ({outcome.accepted} accepted, {outcome.refused} refused in one "
            f"line), {'0 tracebacks' if not failure else 'FAILED: ' + failure}, {seconds:.0f} s",
            flush=True,
        )
        if outcome.by_command:
            print("  inputs per command: " + ", ".join(f"{k} {v}" for k, v in sorted(outcome.by_command.items())))
    header = [
        "# Fuzzing the inputs users hand diffsearch (Hypothesis)",
        "",
        f"`python benchmarks/fuzz.py --count {args.count} --seed {args.seed}`; inputs run in one process on "
        "2 shared CPU cores (timings are rough). An input passes when it is accepted, or refused with exit "
        "code 2 and one line, nothing written. Inputs counts Hypothesis' generated inputs, shrinking included.",
        "",
        "| surface | inputs | accepted | refused (one line, exit 2) | tracebacks | seconds |",
        "|---|---:|---:|---:|---|---:|",
    ]
    new_rows = {
        surface: f"| {surface} | {inputs} | {accepted} | {refused} | {failure or '0'} | {seconds:.0f} |"
        for surface, inputs, accepted, refused, failure, seconds in rows
    }
    out = Path(args.out)
    if out.exists() and "| surface |" in out.read_text():  # replace the rows of the surfaces run now
        lines = out.read_text().splitlines()
        for i, line in enumerate(lines):
            for surface, row in list(new_rows.items()):
                if line.startswith(f"| {surface} "):
                    lines[i] = row
                    del new_rows[surface]
        last_row = max(i for i, line in enumerate(lines) if line.startswith("|"))
        lines[last_row + 1 : last_row + 1] = list(new_rows.values())
    else:
        lines = header + list(new_rows.values())
    out.write_text("\n".join(lines) + "\n")
    return 1 if any(r[4] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
