"""Progress of long steps (``prepare``'s stages, the embedding batches, training epochs): a tqdm bar
on a terminal, one summary line per stage otherwise, nothing when disabled. A bar written into a
file that is not a terminal is thousands of carriage-return updates; the summary line reads well
in a log."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


class Progress:
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.bars = enabled and sys.stderr.isatty()

    def over(
        self,
        iterable: Iterable[T],
        stage: str,
        unit: str = "lines",
        total: int | None = None,
        detail: Callable[[], str] | None = None,
    ) -> Iterator[T]:
        """Yield from ``iterable``, showing a bar, or printing ``stage: N units in S s`` at the end;
        ``detail()`` (say, how many came from a cache) is the bar's postfix or ends the line."""
        if self.bars:
            bar = tqdm(iterable, desc=stage, unit=f" {unit}", unit_scale=True, mininterval=0.5, total=total)
            for value in bar:
                yield value
                if detail is not None:
                    bar.set_postfix_str(detail(), refresh=False)
            return
        start, count = time.perf_counter(), 0
        for count, value in enumerate(iterable, start=1):  # noqa: B007 - count is reported after the loop
            yield value
        extra = f" ({detail()})" if detail is not None else ""
        self.note(f"{stage}: {count:,} {unit} in {time.perf_counter() - start:.1f} s{extra}")

    def note(self, line: str) -> None:
        if self.enabled:
            print(line, file=sys.stderr, flush=True)
