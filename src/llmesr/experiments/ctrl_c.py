"""Ctrl-C for a tune worker: it stops training at once, but never cuts a write to the study.

A KeyboardInterrupt raised inside Optuna's or SQLAlchemy's code can leave a SQLite transaction
open; its lock then stalls the next tune of the same study in the same process. So a Ctrl-C that
lands outside a stretch marked :meth:`DeferredCtrlC.training_only` (or inside one marked
:meth:`DeferredCtrlC.writing_to_study`) is remembered and raised at the next safe point instead.
A second Ctrl-C stops at once, wherever it lands.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class DeferredCtrlC:
    """A SIGINT handler with safe points. Install :meth:`on_sigint` with ``signal.signal``."""

    def __init__(self) -> None:
        self.pressed = False
        self.training = False  # only training code runs now: no write to the study is open

    def on_sigint(self, signum: int, frame: Any) -> None:
        """Python's own KeyboardInterrupt while training (a library may turn it into another
        error, as torch.save does mid-write); elsewhere it waits for :meth:`stop_if_pressed`."""
        pressed_before, self.pressed = self.pressed, True
        if self.training or pressed_before:
            signal.default_int_handler(signum, frame)

    def stop_if_pressed(self) -> None:
        """A safe point: raise the KeyboardInterrupt a Ctrl-C left waiting."""
        if self.pressed:
            raise KeyboardInterrupt

    @contextmanager
    def training_only(self) -> Iterator[None]:
        """A stretch where a Ctrl-C stops at once."""
        self.stop_if_pressed()
        self.training = True
        try:
            yield
        finally:
            self.training = False

    @contextmanager
    def writing_to_study(self) -> Iterator[None]:
        """Inside :meth:`training_only`, a write to the study that a Ctrl-C must not cut."""
        self.training = False
        try:
            yield
        finally:
            self.training = True
        self.stop_if_pressed()
