"""What each job's studies say about themselves in optuna-dashboard (see ``diffsearch.ledger.explain``).

One function per study kind returns ``(metric name, note, extra study attrs)``; ``explain`` and
``attach_images`` are the jobs' two calls (at the start of ``search`` and once the plots are written).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna

from diffsearch.ledger.explain import ARTIFACT_DIR, attach, explain_study

REPORT_HINT = (
    "`diffsearch report --study {study} --storage URL` prints parameter importance over the "
    "params every trial has and writes an HTML page with the plots."
)
DASHBOARD_HINT = (
    f"Images of the run are attached as artifacts (start the dashboard with "
    f"`--artifact-dir <run dir>/{ARTIFACT_DIR}` to see them)."
)
LOST = (
    "A failed trial carries `fail_reason` (the training failed: NaN loss, out of memory...) and counts "
    "against the budget; a trial whose worker died carries `lost_reason` instead, does not count, and "
    "its params run again in a retry whose `retry_of` names it."
)

Explained = tuple[str, str, dict[str, Any]]


def hparams_search(o) -> Explained:
    from diffsearch.objectives.prdc import PRDC_SCALAR_FORMULA
    from diffsearch.searchers import report_epochs

    checkpoints = ", ".join(str(e) for e in hparams_checkpoints(o))
    if o.images:
        metric = "FID"
        how = (
            f"Each trial trains a UNet2DModel (channels x {o.width}) on `{o.dataset}` at {o.resolution}px "
            f"for {o.epochs} epochs, samples {o.fid_samples} images ({o.sampler}, {o.sample_steps} steps) "
            "and scores them against real images: **FID** (Frechet Inception Distance), lower is better. "
            "User attrs `kid` and `kid_std` give the kernel inception distance beside it."
        )
    else:
        metric = "PRDC loss"
        how = (
            f"Each trial trains an MLP denoiser on `{o.dataset}` ({o.n_points} points) for {o.epochs} epochs, "
            f"samples as many points as are held out ({o.held_out}) and scores them against the held-out "
            f"points: **PRDC loss** = {PRDC_SCALAR_FORMULA}. User attrs `precision`, `recall`, `density`, "
            "`coverage` are its parts (exact); `scores` shows them rounded."
        )
    pruned = report_epochs(o.prune, o.min_epochs, o.epochs, o.reduction_factor)
    note = f"""
# {o.study}: training hyperparameters of a diffusion model

A search (searcher `{o.searcher}`, pruner `{o.prune}`, budget {o.trials} finished trials) over the
`{o.space}` space, following the thesis study of Optuna HPO for diffusion training.

## The value
{how}
The value is the score after the last epoch. **Intermediate values** are the same score at epochs
{checkpoints or "(none: the run is too short)"}{"; the pruner compares trials there" if pruned else " (recorded, no pruner acting on them)"}.

## How to read it
- Params are what the searcher chose; user attrs `config.*` are the training settings the trial did not
  search (the space's fixed values and the defaults of params it left out, e.g. `config.weight_decay` 0 for Adam).
- `weight_decay` exists only in AdamW trials and `warmup_ratio` only with a scheduler other than constant:
  the dashboard's importance chart mixes trials with and without them. {REPORT_HINT.format(study=o.study)}
- {LOST}
- Re-trainings of the best config and of the baseline are in the study `{o.study}.repeats`.
- {DASHBOARD_HINT}
"""
    return metric, note, {}


def hparams_checkpoints(o) -> tuple[int, ...]:
    """Epochs at which a trial's score is recorded as an intermediate value: the pruners' checkpoints
    (min_epochs x factor^k below the last epoch). On images without a pruner none: each one is a full FID."""
    from diffsearch.searchers import report_epochs

    if o.prune == "none" and o.images:
        return ()
    return report_epochs("sh", o.min_epochs, o.epochs, o.reduction_factor) if o.min_epochs < o.epochs else ()


def hparams_repeats(o) -> Explained:
    metric = "FID" if o.images else "PRDC loss"
    roles = ["baseline"] if o.baseline else ["best", "baseline"]
    what = (
        "the space's baseline config"
        if o.baseline
        else f"the best config of the search study `{o.study}` (role `best`) and the space's baseline config "
        "(role `baseline`)"
    )
    note = f"""
# {o.study}.repeats: re-trainings of fixed configs (not a search)

Each trial re-trains {what} with another training seed, scored like the search ({metric}, lower is
better). Compare roles by the mean and spread of their values (user attr `role`; `repeat` is the index).

**"Best trial" and parameter importance do not apply here**: every trial of a role has the same params,
so differences between trials are training noise, and the dashboard's best trial is only the luckiest seed.
- {LOST}
- {DASHBOARD_HINT}
"""
    return metric, note, {"kind": "repeats", "repeats_of": o.study, "roles": roles}


def optimizer_study(o) -> Explained:
    from diffsearch.tasks.optimizer_tasks import SCORES

    if ":" in o.task:  # a user's task (--task module:factory): its train() says what the value is
        how = (
            f"Each trial trains the task `{o.task}` (its `train(make_optimizer, seed)`) with one update rule "
            "(params: the program's tokens; user attrs `expr` and `formula` say it in words) at every lr of the "
            f"`{o.lr_grid}` grid (user attr `lr_grid`). **Value: the lowest score `train` returned**; lower "
            "is better."
        )
        metric = f"score of {o.task}"
    else:
        metric = "PRDC loss" if o.score == "prdc" else "denoising loss"
        how = (
            "Each trial trains a diffusion model with one update rule (params: the program's tokens; user attrs "
            "`expr` and `formula` say it in words) in short proxy runs at every lr of the "
            f"`{o.lr_grid}` grid (user attr `lr_grid`), then fully at the best of them (`lr`). **Value: "
            f"{metric}** = {SCORES[o.score]}; lower is better. `curve` holds the loss on a fixed batch during "
            "training."
        )
    note = f"""
# {o.study}: discovering an update rule for diffusion training

After ENOS (Wang et al., NeurIPS 2022): searcher `{o.searcher}`, budget {o.budget} rules, task `{o.task}`.
{how}

## How to read it
- The study holds four kinds of trials, by user attr `role`: `search` (the searcher's candidates),
  `baseline` (hand-designed optimizers: Adam, AdamW, Lion...; Muon, a torch optimizer, has empty token params and
  user attr `optimizer`), `promote` (the best rules re-trained longer, user attr `scale`, with --promote) and
  `transfer` (the top rules and the baselines re-trained on another task, user attr `task`). Only `search` trials
  are the search; compare the others by role and scale.
- The params are program tokens: the importance chart says which token positions mattered, not which
  hyperparameters.
- {LOST}
- {DASHBOARD_HINT}
"""
    return metric, note, {}


def prompt_study(o, prompt: str) -> Explained:
    reward = getattr(o, "reward", "clip") or "clip"
    loss = "spherical CLIP loss" if reward == "clip" else f"minus the {reward} reward"
    metric = loss if o.task == "enhance" else f"minus the {loss}"
    goal = (
        "minimised: the images match the prompt better"
        if o.task == "enhance"
        else "the loss is maximised (value = minus the loss): an attack that keeps the meaning "
        "(sentence similarity >= 0.9) but breaks the images"
    )
    scorer = f"CLIP `{o.clip}`" if reward == "clip" else f"reward `{reward}`"
    formula = (
        ", 2*arcsin(|a/|a| - b/|b||/2)^2 between image and text embeddings"
        if reward == "clip"
        else " (the reward is higher-is-better; the search minimises its negative)"
    )
    note = f"""
# prompt study: "{prompt}"

After DPO-Diff (Wang et al., ICML 2024): task `{o.task}`, space `{o.space}`, searcher `{o.searcher}`,
budget {o.budget} generations, model `{o.model}`, {scorer}.
Each trial generates {o.seeds} image(s) (seeds {o.seed}..{o.seed + o.seeds - 1}, {o.steps} steps, guidance {o.guidance})
for one prompt pair and scores them against the user's prompt. **Value: {metric}**{formula}, {goal}.

## How to read it
- Params are the word chosen for each slot of the prompt; user attrs `positive` and `negative` are the
  resulting prompts, `score` the reward's score (`clip_score` for CLIP), `role` `user_input` (the prompt as given) or `search`.
- A rejected attack candidate ends failed with its `fail_reason` (the similarity) without generating.
- {LOST}
- {DASHBOARD_HINT}
"""
    return metric, note, {}


def explain(study: optuna.Study, explained: Explained) -> None:
    metric, note, attrs = explained
    explain_study(study, metric, note, attrs)


def attach_images(studies: list[optuna.Study], paths: list[str | Path | None], run_dir: str | Path) -> None:
    """Attach the run's images (plots, grids) to each of ``studies``; missing files are skipped."""
    for study in studies:
        for path in paths:
            attach(study, path, run_dir)
