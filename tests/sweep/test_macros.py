"""W&B's command macros as its agent expands them (wandb/sdk/launch/sweeps/utils.py), and ${trial_dir}."""

import json
import shutil
import sys

import pytest

from diffsearch.errors import UsageError
from diffsearch.sweeps.macros import check_command, expand_command, expand_values
from diffsearch.sweeps.schema import Sweep
from diffsearch.sweeps.space import Space

PARAMS = {"lr": 0.01, "use_ema": True, "fp16": False, "opt": {"beta": 0.9}, "name": "a b"}


def sweep(*command):
    return Sweep(
        config={},
        where="s",
        space=Space([]),
        method="random",
        metric="loss",
        goal="minimize",
        trials=1,
        early_terminate=None,
        program="/p/train.py",
        command=tuple(command),
    )


def test_the_argument_macros_write_values_as_wandb_does(tmp_path):
    words = expand_command(sweep("${env}", "${interpreter}", "${program}", "${args}"), PARAMS, str(tmp_path))
    env = [shutil.which("env")] if shutil.which("env") else []
    assert words == env + [
        sys.executable,
        "/p/train.py",
        "--lr=0.01",
        "--use_ema=True",
        "--fp16=False",
        "--opt={'beta': 0.9}",
        "--name=a b",
    ]
    assert expand_command(sweep("x", "${args_no_hyphens}"), PARAMS, str(tmp_path))[1:3] == ["lr=0.01", "use_ema=True"]
    assert expand_command(sweep("x", "${args_no_boolean_flags}"), PARAMS, str(tmp_path))[1:] == [
        "--lr=0.01",
        "--use_ema",
        "--opt={'beta': 0.9}",
        "--name=a b",
    ]
    assert json.loads(expand_command(sweep("x", "${args_json}"), PARAMS, str(tmp_path))[1]) == PARAMS


def test_args_json_file_envvar_and_trial_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_ROOT", "/data")
    words = expand_command(
        sweep("x", "--config=${args_json_file}", "--data=${envvar:DATA_ROOT}/set", "--out=${trial_dir}/ckpt"),
        PARAMS,
        str(tmp_path),
    )
    assert words == ["x", f"--config={tmp_path}/args.json", "--data=/data/set", f"--out={tmp_path}/ckpt"]
    assert json.loads((tmp_path / "args.json").read_text()) == PARAMS
    assert expand_values({"out": "${trial_dir}/c", "deep": {"list": ["${trial_dir}", 3]}, "n": 1}, "/t") == {
        "out": "/t/c",
        "deep": {"list": ["/t", 3]},
        "n": 1,
    }


@pytest.mark.parametrize(
    "command, words",
    [
        (["${interpretor}", "${program}"], "unknown macro '${interpretor}'"),
        (["python", "--all=${args}"], "${args} expands to several words"),
        (["python", "${envvar:UNSET_VARIABLE_FOR_TEST}"], "UNSET_VARIABLE_FOR_TEST is not set"),
        (["python", "${envvar}"], "unknown macro '${envvar}'"),
    ],
)
def test_a_bad_macro_is_one_line(command, words):
    with pytest.raises(UsageError) as error:
        check_command(command, "s.yaml: command")
    assert str(error.value).startswith("s.yaml: command") and words in str(error.value)
