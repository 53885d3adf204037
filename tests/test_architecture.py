"""What docs/architecture.md claims, checked against the code: every registry it lists is a ``Registry`` at
the place it says, with the capabilities it says, and no registry is left out; every protocol is where it
says; the glossary's names exist; its examples run."""

import ast
import importlib
import re
import textwrap
import types
from pathlib import Path

import optuna
import pytest
import torch

from diffsearch.registry import Registry

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "architecture.md").read_text()


def table(heading: str) -> list[list[str]]:
    """The rows (cells, stripped) of the first Markdown table under ``heading``."""
    section = DOC.split(heading, 1)[1].split("\n## ", 1)[0]
    lines = re.search(r"(?m)(^\|.*\n)+", section).group(0).splitlines()
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines[2:]]


def module_of(path: str) -> str:
    """``searchers/hparams/registry.py`` -> ``diffsearch.searchers.hparams.registry`` (``\\_\\_init\\_\\_.py``: the package)."""
    path = path.replace("\\_", "_").removesuffix(".py").removesuffix("/__init__")
    return "diffsearch." + path.replace("/", ".")


def names(cell: str) -> list[str]:
    return re.findall(r"`([A-Za-z_]+)", cell)


def test_every_registry_is_listed_where_it_lives_with_its_capabilities():
    listed = set()
    for row in table("## One shape for every way in"):
        registries, where, _, capabilities, group = row
        module = importlib.import_module(module_of(where))
        declared = set()
        for name in names(registries):
            registry = getattr(module, name)
            assert isinstance(registry, Registry), f"{where}: {name} is not a Registry"
            declared |= {c for entry in registry.builtin().values() for c in entry.capabilities}
            assert registry.entry_point_group == (group.strip("`") or None), f"{name}: entry points {group}"
            listed.add((module.__name__, name))
        listed_caps = set(names(capabilities))
        assert listed_caps <= declared, f"{registries}: the doc lists {listed_caps - declared}, no entry declares them"
    found = set()
    for path in (ROOT / "diffsearch").rglob("*.py"):  # every module-level ``X = Registry(...)`` in the code
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        for node in ast.parse(path.read_text()).body:
            value = getattr(node, "value", None)
            if (
                isinstance(node, (ast.Assign, ast.AnnAssign))
                and isinstance(value, ast.Call)
                and getattr(value.func, "id", None) == "Registry"
            ):
                target = node.targets[0] if isinstance(node, ast.Assign) else node.target
                found.add((module, target.id))
    assert found == listed, f"not in the doc's table: {sorted(found - listed)}; gone: {sorted(listed - found)}"


def test_every_protocol_is_in_the_module_the_doc_names():
    for kind, protocol, where in table("## The protocols"):
        if where == "spaces/":
            continue  # three value classes, checked below
        module = importlib.import_module(module_of(where))
        name = names(protocol)[0]
        assert hasattr(module, name), f"{kind}: {where} has no {name}"
    from diffsearch.objectives.reward_base import RewardKind  # noqa: F401
    from diffsearch.spaces.prompts import PromptSpace  # noqa: F401
    from diffsearch.spaces.training import TrainingSpace  # noqa: F401
    from diffsearch.spaces.update_rule_space import UpdateRuleSpace  # noqa: F401


def test_the_pipeline_family_base_is_abstract():
    from diffsearch.backends.families.base import PipelineBackend

    assert PipelineBackend.__abstractmethods__ == {
        "_encoders",
        "_scheduler",
        "condition",
        "initial_latents",
        "predict",
        "step",
        "decode",
    }


def test_the_glossarys_names_exist():
    from diffsearch.backends.unet_trainer import SAMPLING_SCHEDULERS
    from diffsearch.searchers.hparams.generative import Sampler  # noqa: F401
    from diffsearch.tasks.evaluation import RuleEvaluation, TrainingEvaluation  # noqa: F401
    from diffsearch.tasks.prompt_sd import PromptEvaluation  # noqa: F401

    assert SAMPLING_SCHEDULERS == ("ddim", "ddpm")
    assert callable(importlib.import_module("diffsearch.optimizers").from_expr)


def example(title: str) -> types.ModuleType:
    """The first ```python block under ``title``, run as a module."""
    code = re.search(r"```python\n(.*?)```", DOC.split(title, 1)[1], re.S).group(1)
    module = types.ModuleType(title)
    exec(compile(textwrap.dedent(code), title, "exec"), module.__dict__)
    return module


def test_the_searcher_example_registers_and_runs():
    qmc = example("## Add a searcher")
    registry = Registry("hparams searcher")
    registry.register("qmc", qmc.make, "quasi-Monte Carlo (Optuna QMCSampler)")
    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        assert isinstance(registry.lookup("qmc").value(0), optuna.samplers.QMCSampler)


def test_the_reward_example_is_a_reward():
    brightness = example("## Add a reward")
    reward = brightness.load(None, "cpu", 0)
    images = torch.rand(2, 3, 8, 8, requires_grad=True)
    assert reward.score(images, "x").shape == (2,) and reward.loss(images, "x").requires_grad
