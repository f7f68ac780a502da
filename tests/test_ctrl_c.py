"""A tune worker's Ctrl-C: at once while training, after the write when it lands in one, at once
on the second press. Real SIGINTs to this process (Python runs the handler in the main thread)."""

from __future__ import annotations

import os
import signal

import pytest

from llmesr.experiments.ctrl_c import DeferredCtrlC


@pytest.fixture
def ctrl_c():
    handler = DeferredCtrlC()
    previous = signal.signal(signal.SIGINT, handler.on_sigint)
    yield handler
    signal.signal(signal.SIGINT, previous)


def press() -> None:
    os.kill(os.getpid(), signal.SIGINT)


def test_a_press_while_training_stops_at_once(ctrl_c):
    done = []
    with pytest.raises(KeyboardInterrupt), ctrl_c.training_only():
        press()
        done.append("after the press")
    assert done == [] and ctrl_c.pressed


def test_a_press_inside_a_write_waits_until_the_write_is_done(ctrl_c):
    steps = []
    with pytest.raises(KeyboardInterrupt), ctrl_c.training_only():
        with ctrl_c.writing_to_study():
            press()
            steps.append("write finished")
        steps.append("training went on")
    assert steps == ["write finished"]


def test_a_press_outside_training_waits_for_the_next_safe_point(ctrl_c):
    press()
    assert ctrl_c.pressed  # nothing raised yet
    with pytest.raises(KeyboardInterrupt):
        ctrl_c.stop_if_pressed()
    with pytest.raises(KeyboardInterrupt), ctrl_c.training_only():
        pytest.fail("a waiting Ctrl-C lets no training start")


def test_a_second_press_stops_at_once_anywhere(ctrl_c):
    press()
    with pytest.raises(KeyboardInterrupt):
        press()


def test_no_press_no_stop(ctrl_c):
    with ctrl_c.training_only(), ctrl_c.writing_to_study():
        pass
    ctrl_c.stop_if_pressed()
    assert not ctrl_c.pressed
