"""Progress for the stages of ``prepare``: a tqdm bar on a terminal, one summary line per stage
otherwise (log files and CI output stay readable), nothing when disabled."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


class Progress:
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.bars = enabled and sys.stderr.isatty()

    def over(self, iterable: Iterable[T], stage: str, unit: str = "lines") -> Iterator[T]:
        """Yield from ``iterable``, showing a bar, or printing ``stage: N units in S s`` at the end."""
        if self.bars:
            yield from tqdm(iterable, desc=stage, unit=f" {unit}", unit_scale=True, mininterval=0.5)
            return
        start, count = time.perf_counter(), 0
        for count, value in enumerate(iterable, start=1):  # noqa: B007 - count is reported after the loop
            yield value
        self.note(f"{stage}: {count:,} {unit} in {time.perf_counter() - start:.1f} s")

    def note(self, line: str) -> None:
        if self.enabled:
            print(line, file=sys.stderr, flush=True)
