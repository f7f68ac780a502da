"""The web page served at ``/`` (``index.html`` beside this module): build a history by searching
titles, see recommendations with scores and head/tail badges, and compare two bundles side by side.
Plain HTML + fetch, no build step."""

from importlib.resources import files

PAGE = files("llmesr.serving").joinpath("index.html").read_text(encoding="utf-8")
