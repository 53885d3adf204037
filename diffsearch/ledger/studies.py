"""Studies: created once, checked on every resume, marked finished when their job is over.

Every evaluation is an Optuna trial. A study records its job and settings as user attrs, so it can be
resumed (or joined by ``diffsearch worker``) with only the storage URL and the study name, and a study is
never reused by a different job, or with settings that change what its values mean, by mistake.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from diffsearch.errors import UsageError

FINISHED_ATTR = "search_finished"  # set when the job is over, so its workers leave


def create_or_load_study(
    storage: optuna.storages.BaseStorage,
    name: str,
    attrs: Mapping[str, Any],
    identity: Iterable[str] = ("job",),
    renamed: Mapping[str, str] | None = None,
    sampler: optuna.samplers.BaseSampler | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
) -> optuna.Study:
    """Create the study, or load it after checking that its ``identity`` attrs match ``attrs``.

    ``renamed`` maps an attr to the name older studies stored it under, so they still resume. Attrs
    outside the identity (the budget, the searcher, ...) may change between runs and are updated.
    """
    study = optuna.create_study(
        storage=storage, study_name=name, direction="minimize", sampler=sampler, pruner=pruner, load_if_exists=True
    )
    existing = dict(study.user_attrs)
    for new, old in (renamed or {}).items():
        if new not in existing and old in existing:
            existing[new] = existing[old]
    for key in identity:
        if key in existing and key in attrs and existing[key] != attrs[key]:
            raise UsageError(
                f"study {name!r} was made with {key}={existing[key]!r}, not {attrs[key]!r}: "
                "use another --study name (or another --out)"
            )
    for key, value in attrs.items():
        if study.user_attrs.get(key) != value:
            study.set_user_attr(key, value)
    return study


def load_study(storage: optuna.storages.BaseStorage, name: str) -> optuna.Study | None:
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None


def mark_finished(storage: optuna.storages.BaseStorage, names: Iterable[str]) -> None:
    """Tell the workers of these studies (here and on other machines) that the job is over."""
    for name in names:
        study = load_study(storage, name)
        if study is not None and not study.user_attrs.get(FINISHED_ATTR, False):
            study.set_user_attr(FINISHED_ATTR, True)


def is_finished(study: optuna.Study) -> bool:
    return bool(study.user_attrs.get(FINISHED_ATTR, False))


def is_done(trial: FrozenTrial) -> bool:
    """Finished trials count against the budget; a trial cut by Ctrl-C or a crash does not."""
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and "fail_reason" in trial.user_attrs


def done_trials(study: optuna.Study) -> list[FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False) if is_done(t)]


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The best complete trial in the study's direction (None when none completed); unlike Optuna's
    ``study.best_trial`` it never raises."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return None
    pick = max if study.direction == StudyDirection.MAXIMIZE else min
    return pick(complete, key=lambda t: t.value)
