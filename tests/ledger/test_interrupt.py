import signal

import pytest

from diffsearch.ledger.interrupt import graceful_interrupts, stop_point


@pytest.fixture(autouse=True)
def ctrl_c_delivered():
    """Python's own Ctrl-C handler for each test: a suite started in the background (nohup, `&` in a
    script) inherits an ignored SIGINT, which graceful_interrupts rightly leaves ignored."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def test_first_ctrl_c_waits_for_a_stop_point_and_second_stops_at_once(capsys):
    with graceful_interrupts():
        signal.raise_signal(signal.SIGINT)  # first: only a request
        assert "next safe point" in capsys.readouterr().err
        with pytest.raises(KeyboardInterrupt):
            stop_point()
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)  # second: at once
    stop_point()  # the request ends with the job


def test_previous_handler_is_restored():
    before = signal.getsignal(signal.SIGINT)
    with graceful_interrupts():
        assert signal.getsignal(signal.SIGINT) is not before
    assert signal.getsignal(signal.SIGINT) is before


def test_an_ignored_ctrl_c_stays_ignored():
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with graceful_interrupts():
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        signal.raise_signal(signal.SIGINT)
        stop_point()  # nothing was requested
