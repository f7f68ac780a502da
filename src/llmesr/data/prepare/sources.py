"""The table of raw-dump sources: ``--source`` name -> :class:`Source`. One entry per module."""

from __future__ import annotations

from llmesr.data.parsing import DataFormatError
from llmesr.data.prepare import amazon2014, amazon2018, amazon2023, yelp
from llmesr.data.prepare.source import Source

SOURCES: dict[str, Source] = {
    source.name: source for source in (amazon2014.SOURCE, amazon2018.SOURCE, amazon2023.SOURCE, yelp.SOURCE)
}


def get_source(name: str) -> Source:
    if name not in SOURCES:
        raise DataFormatError(f"unknown source {name!r}: choose one of {', '.join(SOURCES)}")
    return SOURCES[name]
