"""``diffsearch worker`` rebuilds a job's options from its study: the study's attrs, this machine's settings."""

import optuna

from diffsearch.jobs.base import WorkerSettings
from diffsearch.jobs.schedule import JOB, ScheduleOptions, study_attrs


def test_a_schedule_worker_gets_the_studys_options_and_its_own_settings(tmp_path):
    made = ScheduleOptions(model="tiny", nfe=3, budget=7, search_images=2, teacher_steps=6, trial_timeout=12.5)
    study = optuna.create_study(study_name="s")
    for key, value in study_attrs(made).items():
        study.set_user_attr(key, value)
    study.set_user_attr("not_an_option", 1)
    w = WorkerSettings(study="s", storage="sqlite:///x.db", heartbeat=3, out=str(tmp_path), device="cuda:1")
    o = JOB.worker_options(study, w)
    assert (o.model, o.nfe, o.budget, o.search_images, o.teacher_steps) == ("tiny", 3, 7, 2, 6)
    assert o.trial_timeout == 12.5  # the study's --trial-timeout: every worker applies it
    assert (o.study, o.storage, o.heartbeat, o.out, o.device) == ("s", "sqlite:///x.db", 3, str(tmp_path), "cuda:1")
