"""The hparams job's own bookkeeping, without running it."""


def test_busy_minutes_counts_overlaps_once_and_skips_gaps():
    from datetime import datetime, timedelta
    from types import SimpleNamespace

    from diffsearch.jobs.hparams import busy_minutes

    t0 = datetime(2026, 1, 1)
    at = lambda minutes: t0 + timedelta(minutes=minutes)  # noqa: E731
    trials = [
        SimpleNamespace(datetime_start=at(0), datetime_complete=at(10)),  # two workers side by side
        SimpleNamespace(datetime_start=at(5), datetime_complete=at(12)),
        SimpleNamespace(datetime_start=at(600), datetime_complete=at(603)),  # resumed hours later
        SimpleNamespace(datetime_start=at(601), datetime_complete=None),
    ]  # still running
    assert busy_minutes(trials) == 15.0
    assert busy_minutes(trials, until=at(8)) == 8.0
    assert busy_minutes(trials, until=at(602)) == 14.0
