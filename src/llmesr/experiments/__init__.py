"""Experiments over finished runs: grids of runs (:mod:`.grid`, ``llmesr experiment``), comparing
methods (:mod:`.compare`, ``llmesr compare``) and the paper-style report (:mod:`.report`, with
:mod:`.methods` grouping runs into methods, :mod:`.document` and :mod:`.plots` writing it)."""
