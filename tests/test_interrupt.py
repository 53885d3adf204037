import signal

import pytest

from diffsearch.interrupt import graceful_interrupts, stop_point


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
