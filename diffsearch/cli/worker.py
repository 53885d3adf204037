"""``diffsearch worker``: join a study from any machine that reaches its storage and run its trials."""

from __future__ import annotations

import argparse
import os

import optuna

from diffsearch.errors import UsageError
from diffsearch.ledger import DEFAULT_HEARTBEAT_SECONDS, open_storage

DESCRIPTION = """\
Join an existing study and evaluate trials until its budget is met (hparams) or until its job is
over (optimizer, prompt). The study recorded its job and settings when it was created, so the
storage URL and the study name are all a worker needs:

  diffsearch hparams --dataset moons --trials 200 --storage postgresql://user@host/db --study big
  diffsearch worker --study big --storage postgresql://user@host/db     # on every other machine

An optimizer study hands each batch of candidate rules (a level of the tree traversal, a generation)
to whichever workers are free; its searcher reads the scores back from the storage. A prompt study
hands out the generations of each batch of prompts (a generation of the evolution, the candidates of
gpo); each worker loads the study's Stable Diffusion and CLIP models on its own --device.

A data file given by path must exist at the same path on the worker's machine.
"""


def add_parser(subparsers, parser_class, formatter, help_text: str) -> None:
    p = subparsers.add_parser("worker", help=help_text, description=DESCRIPTION,
                              formatter_class=formatter)
    p.add_argument("--study", required=True, help="study name")
    p.add_argument("--storage", required=True, help="Optuna storage URL or journal .log path")
    p.add_argument("--trials", type=int, help="hparams studies: raise the budget to this many finished trials")
    p.add_argument("--heartbeat", type=int, default=DEFAULT_HEARTBEAT_SECONDS,
                   help="seconds between heartbeats of a running trial (a trial silent for 3 beats is re-run)")
    p.add_argument("--out", help="where this worker keeps samples (default: runs/<study>)")
    p.add_argument("--device", default="cpu", help="prompt studies: where this worker runs Stable Diffusion "
                   "and CLIP (cuda, cuda:1, ...)")
    p.add_argument("--dtype", default="float32", help="prompt studies: float32, float16 or bfloat16")
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    storage = open_storage(args.storage, args.heartbeat)
    try:
        study = optuna.load_study(study_name=args.study, storage=storage)
    except KeyError:
        raise UsageError(f"no study {args.study!r} in {args.storage}") from None
    attrs = study.user_attrs
    if attrs.get("job") == "optimizer":
        return _optimizer_worker(study, attrs)
    if attrs.get("job") == "prompt":
        from diffsearch.jobs.prompt import serve_prompt_studies

        serve_prompt_studies(args.storage, [args.study], args.device, args.dtype, args.heartbeat)
        return 0
    if attrs.get("job") != "hparams":
        raise UsageError(f"study {args.study!r} was not made by `diffsearch hparams`, `optimizer` or `prompt` "
                         f"(job={attrs.get('job')!r})")
    from diffsearch.jobs.hparams import HparamsOptions, run_worker  # the job's libraries, only for its workers

    fields = HparamsOptions.__dataclass_fields__
    options = HparamsOptions(**{k: v for k, v in attrs.items() if k in fields and k != "job"},
                             study=args.study, storage=args.storage, out=args.out,
                             heartbeat=args.heartbeat)
    if args.trials is not None:
        options.trials = args.trials
        study.set_user_attr("trials", args.trials)
    run_worker(options.resolved(), worker=os.getpid(), threads=None)
    return 0


def _optimizer_worker(study: optuna.Study, attrs: dict) -> int:
    """Train the rules the optimizer job enqueues until it marks the study finished."""
    from diffsearch.jobs.optimizer_ledger import run_rule_worker
    from diffsearch.spaces.update_rule_space import UpdateRuleSpace

    run_rule_worker(study, UpdateRuleSpace(max_length=int(attrs.get("max_length", 10))))
    return 0
