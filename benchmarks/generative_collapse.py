"""Why the generative searcher falls behind GP after trial 20 (docs/generative_hpo.md, "Collapse onto
the incumbent"): how far its suggestions lie from the incumbent, next to GP's and TPE's, and how
spread out the model's samples are once the history has piled up.

1. Each suggestion's distance to the incumbent of its time (root mean square over the [0, 1]^d code of
   the configuration), averaged over trials 6-20 and 21-50, on four tasks of the suite (seed 0); the
   generative searcher as it is (Thompson sampling by dropout) and as it was before (no dropout).
2. After 30 trials of the generative searcher, 64 samples under each condition the model knows (I = 1
   given the whole history, I = 1 given a random subset of it per sample, I = 0), and the history
   itself: percentiles of their distance to the incumbent. If the context steered the samples, the
   subset and I = 0 rows would be wider than the I = 1 row. Then the same for the searcher pre-trained
   on random bump functions (GenerativeConfig(prior_functions=16)), which has seen many histories.
   Both without dropout: the diagnosis that led to Thompson sampling by dropout.

    python benchmarks/generative_collapse.py     # about 10 minutes on one core
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import optuna
import torch

sys.path.insert(0, str(Path(__file__).parent))
import generative_hpo as bench  # noqa: E402
from generative_screens import SubsetContexts  # noqa: E402

from diffsearch.searchers import make_sampler  # noqa: E402
from diffsearch.searchers.hparams.generative import GenerativeConfig, GenerativeHPO  # noqa: E402
from diffsearch.searchers.hparams.generative_sampler import GenerativeSampler, SpaceCodec  # noqa: E402

TASKS = ("hartmann6", "hpolib-protein_structure", "nasbench201-cifar10", "hpobench-phoneme")
METHODS = ("gp", "tpe", "generative", "generative, no dropout")
SEED = 0


def rms(codes: np.ndarray, centre: np.ndarray) -> np.ndarray:
    return np.sqrt(((np.atleast_2d(codes) - centre) ** 2).mean(axis=1))


def run(task: bench.Task, sampler: optuna.samplers.BaseSampler, trials: int) -> tuple[optuna.Study, list[float]]:
    """``trials`` trials (the benchmark's loop); per trial after the first, its distance to the incumbent
    before it."""
    study = optuna.create_study(sampler=sampler)
    bench.optimize(study, task, trials)
    codes = [SpaceCodec(t.distributions).encode(t.params) for t in study.trials]
    incumbent, best, distances = codes[0], study.trials[0].value, []
    for code, trial in zip(codes[1:], study.trials[1:]):
        distances.append(float(rms(code, incumbent)[0]))
        if trial.value < best:
            incumbent, best = code, trial.value
    return study, distances


def distance_table(tasks: list[bench.Task]) -> str:
    lines = [
        "| task | method | regret at 50 | distance, trials 6-20 | distance, trials 21-50 |",
        "|---|---|---|---|---|",
    ]
    for task in tasks:
        for method in METHODS:
            sampler = (
                GenerativeSampler(seed=SEED, config=GenerativeConfig(dropout=0.0))
                if method.endswith("dropout")
                else make_sampler(method, SEED)
            )
            study, distances = run(task, sampler, 50)
            lines.append(
                f"| {task.name} | {method} | {task.regret(study.best_value):.4f} | "
                f"{np.mean(distances[4:19]):.3f} | {np.mean(distances[19:]):.3f} |"
            )
            print(lines[-1], flush=True)
    return "\n".join(lines) + "\n"


def spread_table(tasks: list[bench.Task], config: GenerativeConfig, trials: int = 30) -> str:
    lines = [
        f"| task (after {trials} trials) | points | 10th percentile | median | 90th percentile |",
        "|---|---|---|---|---|",
    ]
    for task in tasks:
        study, _ = run(task, GenerativeSampler(seed=SEED, config=config), trials)
        model = study.sampler._model
        codec = SpaceCodec(study.trials[-1].distributions)
        X = np.stack([codec.encode(t.params) for t in study.trials]).astype(np.float32)
        y = -np.array([t.value for t in study.trials])
        incumbent = X[int(np.argmax(y))]
        points = {
            "the history": X,
            "samples, I = 1, whole history": GenerativeHPO.generate(model, X, y, n=64),
            # the screens' subset-context loop, run on this model (n > 1 never reaches its super())
            "samples, I = 1, a random subset each": SubsetContexts.generate(model, X, y, n=64),
            "samples, I = 0, whole history": GenerativeHPO.generate(model, X, y, n=64, improves=0.0),
        }
        for name, codes in points.items():
            low, median, high = np.percentile(rms(codes, incumbent), [10, 50, 90])
            lines.append(f"| {task.name} | {name} | {low:.3f} | {median:.3f} | {high:.3f} |")
            print(lines[-1], flush=True)
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    tasks = [t for t in bench.all_tasks("all") if t.name in TASKS]
    spread_tasks = [t for t in tasks if t.name in TASKS[:2]]
    text = (
        "# Generative HPO: collapse onto the incumbent (seed 0)\n\nDistance = root mean square "
        "difference of the [0, 1]^d codes (benchmarks/generative_collapse.py).\n\n## Each suggestion's "
        "distance to the incumbent\n\n"
        + distance_table(tasks)
        + "\n## The generative model's samples after 30 trials (no dropout, the searcher before Thompson "
        "sampling): distance to the incumbent\n\n"
        + spread_table(spread_tasks, GenerativeConfig(dropout=0.0))
        + "\n## The same, pre-trained on 16 random bump functions first (prior_functions=16)\n\n"
        + spread_table(spread_tasks, GenerativeConfig(prior_functions=16, dropout=0.0))
    )
    (bench.RESULTS / "generative_collapse.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
