"""The report page: inline CSS, tables from each Section's rows, PNGs as data: URIs; nothing
is fetched from a network."""

from __future__ import annotations

import base64
import html
from typing import Any

from edgedet.report.sections import Section

CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1300px;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.82em;margin:.6em 0}
td,th{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
.missing{color:#a33;font-style:italic}.note{color:#555;font-size:.9em}
.measured{color:#0a5}.predicted{color:#b60}img{max-width:100%;border:1px solid #eee;margin:.4em 0}
"""


def _cell(key: str, v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return f"<td>{'—' if v is None else html.escape(str(v))}</td>"
    if isinstance(v, float):
        text = f"{100 * v:+.1f}%" if key == "error" else (f"{100 * v:.1f}%" if key in ("mape", "profile_mape")
                                                           else f"{v:.4g}")
        return f'<td class="num">{text}</td>'
    if isinstance(v, int):
        return f'<td class="num">{v}</td>'
    s = html.escape(str(v))
    if key.endswith("label"):
        cls = "measured" if s.startswith("measured") else "predicted"
        return f'<td class="{cls}">{s}</td>'
    return f"<td>{s}</td>"


def table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    keys = list(rows[0])
    for r in rows[1:]:
        keys += [k for k in r if k not in keys]
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    body = "".join("<tr>" + "".join(_cell(k, r.get(k)) for k in keys) + "</tr>" for r in rows)
    return f'<div style="overflow-x:auto"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def section_html(sec: Section, images: list[tuple[str, bytes]]) -> str:
    parts = [f'<section id="{sec.name}"><h2>{html.escape(sec.title)}</h2>']
    if sec.missing:
        parts.append(f'<p class="missing">Missing: {html.escape(sec.missing)}</p>')
    else:
        parts.append(f'<p class="note">Drawn from <code>report/{sec.name}.json</code> (inputs: '
                     f"{html.escape(', '.join(sec.sources))}). {html.escape(sec.note)}</p>")
        for caption, png in images:
            data = base64.b64encode(png).decode("ascii")
            parts.append(f'<img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">')
        parts.append(table(sec.rows))
    parts.append("</section>")
    return "\n".join(parts)


def page(title: str, header_lines: list[str], sections: list[tuple[Section, list[tuple[str, bytes]]]]) -> str:
    head = "".join(f"<p>{html.escape(line)}</p>" for line in header_lines)
    body = "\n".join(section_html(s, imgs) for s, imgs in sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>{head}\n{body}\n</body></html>\n")
