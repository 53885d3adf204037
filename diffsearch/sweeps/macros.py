"""The macros of a sweep file's ``command`` (W&B's, as its agent expands them) and ``${trial_dir}``.

W&B's agent (``wandb/sdk/launch/sweeps/utils.py``) builds a run's command from the sweep's ``command``:

- ``${env}``: ``/usr/bin/env`` (left out where there is none); ``${interpreter}``: the Python (here the one
  diffsearch runs on, its virtual environment); ``${program}``: the sweep's program;
- ``${args}``: ``--name=value`` per parameter, ``${args_no_hyphens}``: ``name=value``,
  ``${args_no_boolean_flags}``: ``--name=value`` except a boolean, which is ``--name`` when true and left out
  when false; the value is Python's ``str`` of it, so a nested parameter is ``--outer={'inner': 1}`` as W&B
  passes it (the program reads it from ``wandb.config``, or use ``${args_json}``);
- ``${args_json}``: the values as one JSON word; ``${args_json_file}``: the path of a file holding that JSON
  (here ``<trial_dir>/args.json``);
- ``${envvar:NAME}``: the environment variable NAME.

Ours: ``${trial_dir}``, the trial's own folder (in ``command`` and in text values of parameters), so each
trial gets its own checkpoints and logs. The argument macros and ``${env}`` stand alone as a word (they
expand to several words, or none); the others may sit inside a word (``--output_dir=${trial_dir}/ckpt``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Iterable, Protocol, Sequence

from diffsearch.errors import UsageError


class CommandSource(Protocol):
    """What expansion reads of a sweep (schema.Sweep has both); a protocol so that schema.py, which
    checks commands with this module, is not imported back."""

    @property
    def command(self) -> Sequence[str]: ...

    @property
    def program(self) -> str | None: ...


# macros that expand to a list of words (or none): only a whole word of the command
WORD_MACROS = ("${env}", "${args}", "${args_no_hyphens}", "${args_no_boolean_flags}", "${args_json}")
# macros that expand to one piece of text: anywhere in a word
TEXT_MACROS = ("${interpreter}", "${program}", "${args_json_file}", "${trial_dir}")
MACROS = WORD_MACROS + TEXT_MACROS + ("${envvar:NAME}",)
TRIAL_DIR = "${trial_dir}"
ARGS_JSON_FILE = "args.json"  # what ${args_json_file} names, inside the trial's folder

_ANY_MACRO = re.compile(r"\$\{[^}]*\}")
_ENVVAR = re.compile(r"\$\{envvar:([A-Za-z0-9_]+)\}")


def check_command(command: Iterable[str], where: str) -> None:
    """One line naming ``where`` for a macro that does not exist, or an argument macro inside a word."""
    for word in command:
        for macro in _ANY_MACRO.findall(word):
            if macro in WORD_MACROS:
                if word != macro:
                    raise UsageError(
                        f"{where}: {macro} expands to several words: write it as a word of its own "
                        f"(not inside {word!r})"
                    )
            elif macro not in TEXT_MACROS and not _ENVVAR.fullmatch(macro):
                raise UsageError(f"{where}: unknown macro {macro!r}; known: {', '.join(MACROS)}")
        for name in _ENVVAR.findall(word):
            if name not in os.environ:
                raise UsageError(f"{where}: ${{envvar:{name}}}: the environment variable {name} is not set")


def check_values(spec: Any, where: str) -> None:
    """Text values of parameters may hold ``${trial_dir}`` and no other macro."""
    if isinstance(spec, dict):
        for key, value in spec.items():
            check_values(value, f"{where}.{key}")
    elif isinstance(spec, list):
        for value in spec:
            check_values(value, where)
    elif isinstance(spec, str):
        for macro in _ANY_MACRO.findall(spec):
            if macro != TRIAL_DIR:
                raise UsageError(
                    f"{where}: unknown macro {macro!r} in a value; a value may hold {TRIAL_DIR} "
                    "(the trial's own folder)"
                )


def expand_values(params: dict[str, Any], trial_dir: str) -> dict[str, Any]:
    """``params`` with ``${trial_dir}`` replaced in every text value, nested ones included."""

    def expand(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace(TRIAL_DIR, str(trial_dir))
        if isinstance(value, dict):
            return {key: expand(item) for key, item in value.items()}
        if isinstance(value, list):
            return [expand(item) for item in value]
        return value

    return expand(params)


def argument_words(params: dict[str, Any]) -> dict[str, list[str]]:
    """The argument macros' words for ``params`` (the values the program gets, nested ones as dicts)."""
    args, no_hyphens, no_booleans = [], [], []
    for name, value in params.items():
        flag = f"{name}={value}"  # str(value), as W&B's agent writes it
        args.append("--" + flag)
        no_hyphens.append(flag)
        if isinstance(value, bool):
            if value:
                no_booleans.append("--" + name)
        else:
            no_booleans.append("--" + flag)
    return {
        "${args}": args,
        "${args_no_hyphens}": no_hyphens,
        "${args_no_boolean_flags}": no_booleans,
        "${args_json}": [json.dumps(params)],
    }


def expand_command(sweep: CommandSource, params: dict[str, Any], trial_dir: str) -> list[str]:
    """The trial's command: ``sweep.command`` with every macro expanded for ``params`` (``${trial_dir}``
    already replaced in them, see ``expand_values``); ``${args_json_file}`` writes the JSON into trial_dir."""
    words = argument_words(params)
    words["${env}"] = [shutil.which("env")] if shutil.which("env") else []  # none on Windows: the same without
    text = {"${interpreter}": sys.executable, "${program}": sweep.program or "", TRIAL_DIR: str(trial_dir)}
    if any("${args_json_file}" in word for word in sweep.command):
        if not str(trial_dir):
            raise ValueError("${args_json_file} is written into the trial's folder: give trial_dir")
        path = Path(trial_dir) / ARGS_JSON_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(params))
        text["${args_json_file}"] = str(path)
    expanded: list[str] = []
    for word in sweep.command:
        if word in words:
            expanded.extend(words[word])
            continue
        word = _ENVVAR.sub(lambda m: os.environ.get(m.group(1), ""), word)
        for macro, value in text.items():
            word = word.replace(macro, value)
        expanded.append(word)
    return expanded
