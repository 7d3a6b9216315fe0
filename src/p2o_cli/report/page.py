"""The report as one self-contained HTML file: opens from disk, fetches nothing.

The page is report.md's text (tables and paragraphs) with each figure inline as an SVG image
(base64 ``data:`` URI, so the figures' ids and styles cannot clash), each run's configuration,
and the GEPA explorer: the explorer's data sits in the page as JSON and a small script of our own
(``assets/explorer.js``, no libraries) draws it.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

import orjson

from .style import FORMATS, Chart, render

SCREEN_DPI = 150
IMAGE_LINE = re.compile(r"^!\[[^\]]*\]\(([^)]+)\)$")


def asset(name: str) -> str:
    return resources.files(__package__).joinpath("assets", name).read_text(encoding="utf-8")


def inline(text: str) -> str:
    """Escaped text with `code` spans."""
    parts = text.split("`")
    return "".join(f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p) for i, p in enumerate(parts))


def table_html(lines: Sequence[str]) -> str:
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
    body = [row for row in cells[1:] if not all(set(c) <= set("-: ") for c in row)]
    head = "".join(f"<th>{inline(c)}</th>" for c in cells[0])
    rows = "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in row) + "</tr>" for row in body)
    return f'<div class="table"><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>'


def figure_html(chart: Chart, svg: bytes) -> str:
    data = base64.b64encode(svg).decode("ascii")
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in chart.notes)
    width = round(chart.figure.get_figwidth() * SCREEN_DPI)  # the page shows figures larger than print
    return (f'<figure id="fig-{chart.name}"><img alt="{html.escape(chart.name)}" style="width: {width}px" '
            f'src="data:image/svg+xml;base64,{data}"><figcaption>{html.escape(chart.caption)}'
            + (f"<ul>{notes}</ul>" if notes else "") + "</figcaption></figure>")


def markdown_html(body: str, figures: Mapping[str, str]) -> str:
    """report.md's subset of markdown (headings, paragraphs, pipe tables, images of our figures,
    an italic caption line after each) as HTML; ``figures`` maps an image file name to its HTML."""
    out: list[str] = []
    for block in re.split(r"\n\s*\n", body.strip()):
        lines = block.strip().splitlines()
        if all(line.startswith("|") for line in lines):
            out.append(table_html(lines))
        elif lines[0].startswith("#"):
            level = min(len(lines[0]) - len(lines[0].lstrip("#")) + 1, 4)
            out.append(f"<h{level}>{inline(lines[0].lstrip('#').strip())}</h{level}>")
            if lines[1:]:
                out.append(markdown_html("\n".join(lines[1:]), figures))
        elif all(IMAGE_LINE.match(line) for line in lines):
            out += [figures.get(IMAGE_LINE.match(line).group(1), "") for line in lines]  # type: ignore[union-attr]
        elif not (lines[0].startswith("*") and lines[-1].endswith("*")):  # captions: the figure has its own
            out.append(f"<p>{inline(' '.join(lines))}</p>")
    return "\n".join(out)


def config_html(configs: Mapping[str, dict[str, Any]]) -> str:
    items = []
    for label, config in configs.items():
        text = orjson.dumps(config, option=orjson.OPT_INDENT_2).decode()
        items.append(f"<details><summary>{html.escape(label)}</summary><pre>{html.escape(text)}</pre></details>")
    return '<section id="configuration"><h2>Run configuration</h2>' + "".join(items) + "</section>"


def explorer_html(explorers: Sequence[dict[str, Any]]) -> str:
    if not explorers:
        return ""
    # "</" cannot close the script element early once escaped; JSON reads it back unchanged.
    data = orjson.dumps(list(explorers)).decode().replace("</", "<\\/")
    return ('<section id="explorer"><h2>GEPA explorer</h2>'
            '<p class="lead">The templates each epoch\'s prompt search kept (a tree from the empty seed '
            "template, parent → child), the children it refused, and what the rollouts of a sample of hard "
            "problems looked like before and after. Click a template for its text and the problems it "
            "covers.</p><div id=\"explorer-root\"><noscript>The explorer needs JavaScript.</noscript></div>"
            f'<script type="application/json" id="explorer-data">{data}</script></section>')


def nav(explorer: bool) -> str:
    links = [("#explorer", "GEPA explorer")] if explorer else []
    links.append(("#configuration", "run configuration"))
    return '<nav class="toc">' + " · ".join(f'<a href="{href}">{text}</a>' for href, text in links) + "</nav>"


def page(title: str, body_md: str, charts: Sequence[Chart], dpi: int, configs: Mapping[str, dict[str, Any]],
         explorers: Sequence[dict[str, Any]]) -> str:
    """The whole HTML document. Figures are rendered here as SVG, whatever format the files took."""
    figures: dict[str, str] = {}
    for chart in charts:
        if chart.figure is None:
            continue
        snippet = figure_html(chart, render(chart.figure, "svg", dpi))
        figures.update({f"{chart.name}.{ext}": snippet for ext in FORMATS})
    script = f"<script>{asset('explorer.js')}</script>" if explorers else ""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<link rel="icon" href="data:,"><title>{html.escape(title)}</title><style>{asset("report.css")}</style>'
        f"</head><body><main>{nav(bool(explorers))}{markdown_html(body_md, figures)}{explorer_html(explorers)}"
        f"{config_html(configs)}"
        f"</main>{script}</body></html>\n"
    )
