"""Studies that explain themselves in optuna-dashboard: the objective's name, a note, attached images.

One place for what a person reading a study needs beside its numbers:

- ``explain_study``: the metric's name (``study.set_metric_names``, instead of "Objective 0"), a study
  note in Markdown (optuna-dashboard's note API; without optuna-dashboard installed the same text is kept
  as the study user attr ``note``), and extra study user attrs (a repeats study says it is one);
- ``attach``: a file (a plot, an image grid) as an Optuna artifact of the study or a trial, stored in
  ``<run dir>/artifacts`` (``optuna-dashboard <storage> --artifact-dir <run dir>/artifacts`` shows them);
- ``artifact_store``: the run folder's artifact store;
- ``display_number``: a float rounded for reading (the trial's value itself stays exact).
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Any, Mapping

import optuna

ARTIFACT_DIR = "artifacts"
NOTE_ATTR = "note"  # the note's text, kept as a study user attr when optuna-dashboard is absent


def artifact_store(run_dir: str | Path) -> optuna.artifacts.FileSystemArtifactStore:
    path = Path(run_dir) / ARTIFACT_DIR
    path.mkdir(parents=True, exist_ok=True)
    return optuna.artifacts.FileSystemArtifactStore(str(path))


def explain_study(study: optuna.Study, metric: str, note: str, attrs: Mapping[str, Any] | None = None) -> None:
    """Name the study's objective ``metric``, write ``note`` (Markdown), set ``attrs`` as study user attrs.

    Safe to call on every run and resume: nothing is written that is already there.
    """
    with warnings.catch_warnings():  # set_metric_names is "experimental" in Optuna 3.2 to 5
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if study.metric_names != [metric]:
            study.set_metric_names([metric])
    for key, value in (attrs or {}).items():
        if study.user_attrs.get(key) != value:
            study.set_user_attr(key, value)
    note = note.strip() + "\n"
    if study.user_attrs.get(NOTE_ATTR) == note:
        return  # already written by an earlier run
    try:
        import optuna_dashboard
    except ImportError:  # the dev extra is not installed: the text is still in the study
        study.set_user_attr(NOTE_ATTR, note)
        return
    optuna_dashboard.save_note(study, note)
    study.set_user_attr(NOTE_ATTR, note)  # also readable without the dashboard (diffsearch report)


def attach(
    target: optuna.Study | optuna.Trial | optuna.trial.FrozenTrial,
    path: str | Path | None,
    run_dir: str | Path,
    storage: optuna.storages.BaseStorage | None = None,
) -> str | None:
    """Upload the file at ``path`` as an artifact of ``target`` (a study or trial); its artifact id.

    Nothing happens for a missing file (a plot that was not drawn). A file with the same name and the same
    content already attached (a resumed run) is not uploaded twice.
    """
    if path is None or not Path(path).is_file():
        return None
    store = artifact_store(run_dir)
    data = Path(path).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    study = target if isinstance(target, optuna.Study) else None
    kwargs: dict[str, Any] = {"storage": storage} if study is None and storage is not None else {}
    for meta in optuna.artifacts.get_all_artifact_meta(target, **kwargs):
        if meta.filename == Path(path).name and _stored_digest(store, meta.artifact_id) == digest:
            return meta.artifact_id
    with warnings.catch_warnings():  # the artifact API is "experimental" in Optuna 3.3 to 5
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.artifacts.upload_artifact(
            study_or_trial=target, file_path=str(path), artifact_store=store, **kwargs
        )


def _stored_digest(store: optuna.artifacts.FileSystemArtifactStore, artifact_id: str) -> str | None:
    try:
        with store.open_reader(artifact_id) as reader:
            return hashlib.sha256(reader.read()).hexdigest()
    except Exception:  # removed by hand, another store: upload again
        return None


def display_number(value: float, digits: int = 4) -> float:
    """``value`` rounded for reading in the dashboard (e.g. 0.013267499999999996 -> 0.0133)."""
    return round(float(value), digits)
