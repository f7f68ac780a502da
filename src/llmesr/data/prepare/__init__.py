"""Raw public review dumps (Amazon 2014 / 2018 / 2023, Yelp) -> llmesr's sequences folder and a
dataset card. See :func:`prepare`, the :data:`SOURCES` table and the filter :data:`PRESETS`."""

from llmesr.data.prepare.filters import PRESETS, CoreStep, Filters, resolve_filters
from llmesr.data.prepare.pipeline import prepare
from llmesr.data.prepare.source import Source
from llmesr.data.prepare.sources import SOURCES, get_source

__all__ = ["PRESETS", "SOURCES", "CoreStep", "Filters", "Source", "get_source", "prepare", "resolve_filters"]
