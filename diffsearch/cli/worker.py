"""``diffsearch worker``: join a study from any machine that reaches its storage and run its trials."""

from __future__ import annotations

import argparse

from diffsearch.errors import UsageError
from diffsearch.ledger import DEFAULT_HEARTBEAT_SECONDS, load_study, open_storage

DESCRIPTION = """\
Join an existing study and evaluate trials until its budget is met (hparams) or until its job is
over (optimizer, prompt). The study recorded its job and settings when it was created, so the
storage URL and the study name are all a worker needs:

  diffsearch hparams --dataset moons --trials 200 --storage postgresql://user@host/db --study big
  diffsearch worker --study big --storage postgresql://user@host/db     # on every other machine

An optimizer study hands each batch of candidate rules (a level of the tree traversal, a generation)
to whichever workers are free; its searcher reads the scores back from the storage. A prompt study
hands out the generations of each batch of prompts (a generation of the evolution, the candidates of
gpo); each worker loads the study's Stable Diffusion and CLIP models on its own --device. A noise study
started with --workers 2 or more hands out its generations from seeds (best-of-n's draws); each worker
loads the study's pipeline and verifier.

A data file given by path must exist at the same path on the worker's machine.
"""


def add_parser(subparsers, parser_class, formatter, help_text: str) -> None:
    p = subparsers.add_parser("worker", help=help_text, description=DESCRIPTION, formatter_class=formatter)
    p.add_argument("--study", required=True, help="study name")
    p.add_argument("--storage", required=True, help="Optuna storage URL or journal .log path")
    p.add_argument("--trials", type=int, help="hparams studies: raise the budget to this many finished trials")
    p.add_argument(
        "--heartbeat",
        type=int,
        default=DEFAULT_HEARTBEAT_SECONDS,
        help="seconds between heartbeats of a running trial (a trial silent for 3 beats is re-run)",
    )
    p.add_argument("--out", help="where this worker keeps samples (default: runs/<study>)")
    p.add_argument(
        "--device",
        default="cpu",
        help="prompt and noise studies: where this worker runs the pipeline and its reward (cuda, cuda:1, ...)",
    )
    p.add_argument("--dtype", default="float32", help="prompt and noise studies: float32, float16 or bfloat16")
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    from diffsearch.jobs import JOBS, load_job  # the job's libraries, only for its workers
    from diffsearch.jobs.base import WorkerSettings

    study = load_study(open_storage(args.storage, args.heartbeat), args.study)
    if study is None:
        raise UsageError(f"no study {args.study!r} in {args.storage}")
    name = study.user_attrs.get("job")
    if name not in JOBS:
        first, *others = JOBS
        made_by = f"`diffsearch {first}`" + "".join(
            f"{' or ' if i == len(others) - 1 else ', '}`{other}`" for i, other in enumerate(others)
        )
        raise UsageError(f"study {args.study!r} was not made by {made_by} (job={name!r})")
    job = load_job(name)
    settings = WorkerSettings(
        study=args.study,
        storage=args.storage,
        heartbeat=args.heartbeat,
        out=args.out,
        trials=args.trials,
        device=args.device,
        dtype=args.dtype,
    )
    job.serve(job.worker_options(study, settings))
    return 0
