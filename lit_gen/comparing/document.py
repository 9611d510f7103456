"""One document, two renderings: Markdown (figures as relative links) and a self-contained HTML page
(figures embedded as base64, no external files or scripts).

A document is a list of blocks: ``Heading``, ``Text``, ``Grid`` (a table whose blank cells carry
reasons, rendered as numbered notes under it) and ``Image``.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

from lit_gen.comparing.table import Cell


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Text:
    text: str


@dataclass
class Grid:
    columns: list[str]
    rows: list[list[Cell]]
    notes: dict[str, str] = field(default_factory=dict)


@dataclass
class Image:
    path: Path
    caption: str = ""


Block = Heading | Text | Grid | Image


def _reasons(grid: Grid) -> dict[str, int]:
    """Each distinct blank reason and its note number, in reading order."""
    numbers: dict[str, int] = {}
    for row in grid.rows:
        for cell in row:
            if cell.blank and cell.reason and cell.reason not in numbers:
                numbers[cell.reason] = len(numbers) + 1
    return numbers


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list[Block], base: Path) -> str:
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            lines += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Text):
            lines += [block.text, ""]
        elif isinstance(block, Image):
            lines += [f"![{block.path.stem}]({block.path.relative_to(base)})", ""]
            if block.caption:
                lines += [f"*{block.caption}*", ""]
        else:
            numbers = _reasons(block)
            lines.append("| " + " | ".join(_md_escape(c) for c in block.columns) + " |")
            lines.append("|" + "---|" * len(block.columns))
            for row in block.rows:
                cells = [f"– [{numbers[c.reason]}]" if c.blank and c.reason else "–" if c.blank else _md_escape(c.text)
                         for c in row]
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
            if block.notes:
                lines += [f"- `{_md_escape(title)}`: {_md_escape(note)}" for title, note in block.notes.items()] + [""]
            if numbers:
                lines += [f"[{n}] {_md_escape(reason)}  " for reason, n in numbers.items()] + [""]
    return "\n".join(lines)


STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}
td:first-child,th:first-child{text-align:left}td.blank{color:#999;text-align:center}
.notes{font-size:12px;color:#444}figure{margin:1em 0}figcaption{font-size:12px;color:#444}img{max-width:100%}"""


def to_html(blocks: list[Block], title: str) -> str:
    e = html.escape
    body: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{e(block.text)}</h{block.level}>")
        elif isinstance(block, Text):
            body.append(f"<p>{e(block.text)}</p>")
        elif isinstance(block, Image):
            data = base64.b64encode(block.path.read_bytes()).decode("ascii")
            body.append(f'<figure><img alt="{e(block.caption)}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{e(block.caption)}</figcaption></figure>")
        else:
            numbers = _reasons(block)
            rows = ["<tr>" + "".join(f"<th>{e(c)}</th>" for c in block.columns) + "</tr>"]
            for row in block.rows:
                cells = []
                for c in row:
                    if c.blank:
                        mark = f"–<sup>{numbers[c.reason]}</sup>" if c.reason else "–"
                        cells.append(f'<td class="blank" title="{e(c.reason or "")}">{mark}</td>')
                    else:
                        cells.append(f"<td>{e(c.text)}</td>")
                rows.append("<tr>" + "".join(cells) + "</tr>")
            body.append("<table>" + "".join(rows) + "</table>")
            notes = [f"<li><code>{e(t)}</code>: {e(n)}</li>" for t, n in block.notes.items()]
            notes += [f"<li>[{n}] {e(r)}</li>" for r, n in numbers.items()]
            if notes:
                body.append('<ul class="notes">' + "".join(notes) + "</ul>")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{e(title)}</title><style>{STYLE}</style>"
            f"</head><body>\n" + "\n".join(body) + "\n</body></html>\n")
