"""Jobs: the things a user runs (``diffsearch hparams`` ...), callable from Python with the CLI's options.

Each job is one module with a ``JOB`` object (see ``base.Job``); ``run_job`` runs any of them. Adding a
job is adding its module, its CLI module ``diffsearch/cli/<name>.py`` and a line here.
"""

import importlib
from typing import NamedTuple

from diffsearch.registry import Registry


class JobEntry(NamedTuple):
    module: str  # imported only when the job runs: each job loads its own heavy libraries
    description: str


_JOBS = {
    "hparams": JobEntry(
        "diffsearch.jobs.hparams",
        "tune the training hyperparameters of a diffusion model: PRDC on vectors, FID on images "
        "(the thesis study of Optuna HPO for diffusion training)",
    ),
    "optimizer": JobEntry(
        "diffsearch.jobs.optimizer",
        "discover optimizer update rules for diffusion training (ENOS, Wang et al., NeurIPS 2022)",
    ),
    "prompt": JobEntry(
        "diffsearch.jobs.prompt",
        "optimise a Stable Diffusion prompt: negative prompt or attack (DPO-Diff, Wang et al., ICML 2024)",
    ),
    "noise": JobEntry(
        "diffsearch.jobs.noise",
        "better images from the same model: search the initial noise and "
        "sampling path scored by a verifier (Ma et al., CVPR 2025)",
    ),
    "schedule": JobEntry(
        "diffsearch.jobs.schedule",
        "search the timesteps of a short sampler of a pretrained model: "
        "fewer steps at the same quality (AutoDiffusion, Li et al., ICCV 2023; LD3, ICLR 2025)",
    ),
    "sweep": JobEntry(
        "diffsearch.jobs.sweep",
        "tune any training program from a W&B-style sweep file (its JSON-line reports drive pruning)",
    ),
}


# name -> the job's module (a string: imported only when the job runs)
JOBS: Registry[str] = Registry("job")
for _name, _entry in _JOBS.items():
    JOBS.register(_name, _entry.module, _entry.description)


def load_job(name: str):
    """The ``JOB`` object of a job's module (see ``diffsearch.jobs.base.Job``)."""
    return importlib.import_module(JOBS.lookup(name).value).JOB
