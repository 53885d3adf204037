"""Any mangled sweep file is either read or refused with one UsageError line, never another exception:
seeded random mutations (a value replaced by junk of another type, a key dropped or misspelt) of the
conformance files in wandb_docs/."""

import copy
import random
from pathlib import Path

import pytest
import yaml

from diffsearch.errors import UsageError
from diffsearch.sweeps.schema import parse_sweep, plain

DOCS = Path(__file__).resolve().parent / "wandb_docs"
JUNK = [
    None,
    True,
    0,
    -1,
    1.5,
    float("nan"),
    float("inf"),
    1e308,
    "",
    "text",
    "${nope}",
    "${trial_dir}",
    [],
    [1, "a"],
    [[1]],
    {},
    {"x": 1},
    {"parameters": {}},
    {"values": []},
    {"min": 1, "max": 0},
    {"distribution": "normal", "sigma": 0},
    {"type": "hyperband", "s": 1},
]


def paths(node, prefix=()):
    """Every (path, value) inside a mapping/list tree."""
    yield prefix, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from paths(value, prefix + (i,))


def mutate(config, rng):
    config = copy.deepcopy(config)
    path, _ = rng.choice([p for p in paths(config) if p[0]])
    parent = config
    for key in path[:-1]:
        parent = parent[key]
    action = rng.random()
    if action < 0.6:
        parent[path[-1]] = copy.deepcopy(rng.choice(JUNK))
    elif isinstance(parent, dict) and action < 0.8:
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent[str(path[-1]) + "_"] = parent.pop(path[-1])
    return config


@pytest.mark.parametrize("source", sorted(p.name for p in DOCS.glob("*.yaml")))
def test_mangled_sweep_files_are_read_or_refused_in_one_line(source, tmp_path):
    config = yaml.safe_load((DOCS / source).read_text())
    config.pop("program", None)  # the file's program is not beside it here; a command without it is checked
    config["command"] = ["echo", "${args}"] if "command" not in config else config["command"]
    rng = random.Random(source)
    for attempt in range(60):
        mangled = config
        for _ in range(1 + attempt % 3):  # one to three mutations at once
            mangled = mutate(mangled, rng)
        for runs_program in (True, False):
            try:
                sweep = parse_sweep(plain(mangled, "s.yaml"), "s.yaml", runs_program=runs_program)
            except UsageError as exc:
                assert "\n" not in str(exc) and str(exc).startswith(("s.yaml", "--trials")), str(exc)
            else:
                assert sweep.space.parameters
