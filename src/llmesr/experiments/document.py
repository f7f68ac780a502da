"""A report as a list of parts (headings, notes, tables, figures), written as Markdown and as one
self-contained HTML file: figures embedded as base64 PNG data URIs, CSS inline, no script and no
external resource, so the file can be mailed or archived and still show everything.

Table cells are Markdown text whose only markup is ``**bold**``; the HTML writer escapes the text and
turns that markup into ``<strong>``, so both files always show the same table.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass
from pathlib import Path

from llmesr.io import atomic_write_text


@dataclass
class Heading:
    level: int
    text: str


@dataclass
class Note:
    text: str


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    labels: int = 1  # leading columns that name the row (left-aligned); the rest are numbers


@dataclass
class Figure:
    path: Path  # a PNG inside the report folder
    caption: str


Part = Heading | Note | Table | Figure

CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; padding: 0 1rem; max-width: 1400px; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.3rem; margin-top: 2rem; border-bottom: 1px solid #ccc; }
h3 { font-size: 1.05rem; }
table { border-collapse: collapse; font-size: 0.8rem; margin: 0.5rem 0; }
th, td { border: 1px solid #ccc; padding: 0.2rem 0.45rem; text-align: right; white-space: nowrap; }
th { background: #f2f2f2; } .label { text-align: left; }
div.wide { overflow-x: auto; }
p.note { color: #555; font-size: 0.85rem; }
figure { margin: 1rem 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85rem; color: #555; }
"""


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(parts: list[Part], root: Path) -> str:
    lines: list[str] = []
    for part in parts:
        if isinstance(part, Heading):
            lines += ["#" * part.level + " " + part.text, ""]
        elif isinstance(part, Note):
            lines += [part.text, ""]
        elif isinstance(part, Table):
            lines.append("| " + " | ".join(map(_md_cell, part.header)) + " |")
            lines.append("|" + "---|" * len(part.header))
            lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in part.rows]
            lines.append("")
        else:
            lines += [f"![{part.caption}]({Path(part.path).relative_to(root).as_posix()})", ""]
    return "\n".join(lines)


def _html_cell(text: str) -> str:
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html.escape(text)).replace("\n", "<br>")


def _html_table(table: Table) -> str:
    def cell(tag: str, i: int, text: str) -> str:
        label = ' class="label"' if i < table.labels else ""
        return f"<{tag}{label}>{_html_cell(text)}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(table.header))
    rows = "".join("<tr>" + "".join(cell("td", i, c) for i, c in enumerate(r)) + "</tr>" for r in table.rows)
    # Wide tables (Table 1 has 12 columns) scroll inside their box instead of widening the page.
    return f'<div class="wide"><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>'


def to_html(parts: list[Part], title: str) -> str:
    body: list[str] = []
    for part in parts:
        if isinstance(part, Heading):
            body.append(f"<h{part.level}>{html.escape(part.text)}</h{part.level}>")
        elif isinstance(part, Note):
            body.append(f'<p class="note">{_html_cell(part.text)}</p>')
        elif isinstance(part, Table):
            body.append(_html_table(part))
        else:
            data = base64.b64encode(Path(part.path).read_bytes()).decode("ascii")
            caption = html.escape(part.caption)
            body.append(
                f'<figure><img alt="{caption}" src="data:image/png;base64,{data}">'
                f"<figcaption>{caption}</figcaption></figure>"
            )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        # An empty inline icon: otherwise the browser asks for /favicon.ico, an external request.
        '<link rel="icon" href="data:,">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def write_report(parts: list[Part], out: Path, title: str) -> None:
    """``out/report.md`` and ``out/report.html`` (the figures' PNGs are already in ``out``)."""
    atomic_write_text(out / "report.md", to_markdown(parts, out))
    atomic_write_text(out / "report.html", to_html(parts, title))
