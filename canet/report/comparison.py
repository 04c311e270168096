"""The HTML page of a comparison (``compare.json`` written by ``canet compare``).

The page shows the same tables and notes as ``compare.md`` (taken from the
``"tables"`` and ``"notes"`` entries of ``compare.json``) in the style of the run
report, as one self-contained file.
"""

from __future__ import annotations

import html
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from canet.errors import CanetError
from canet.io import atomic_write_text
from canet.report.style import PAGE_CSS

__all__ = ["comparison_html", "write_comparison_report"]


def comparison_html(data: dict[str, Any], title: str = "canet comparison") -> str:
    """The HTML page for a ``compare.json`` dict.

    Raises:
        CanetError: the dict has no ``"tables"`` list (not a ``compare.json``).
    """
    tables = data.get("tables")
    if not isinstance(tables, list):
        raise CanetError("not a canet compare.json: it has no 'tables' list")
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [f"<h1>{html.escape(title)}</h1>", f'<p class="meta">generated {stamp}; reference: '
             f"{html.escape(str(data.get('reference')))}</p>"]
    for table in tables:
        parts.append(f"<h2>{html.escape(str(table.get('title', '')))}</h2><table><tr>")
        parts.append("".join(f"<th>{html.escape(str(h))}</th>" for h in table.get("header", [])) + "</tr>")
        for row in table.get("rows", []):
            parts.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>")
        parts.append("</table>")
    notes = data.get("notes") or []
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(str(n))}</li>" for n in notes) + "</ul>")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{PAGE_CSS}</style></head><body>\n"
        + "\n".join(parts)
        + "\n</body></html>\n"
    )


def write_comparison_report(
    compare_json: str | os.PathLike[str], out: str | os.PathLike[str] | None = None
) -> Path:
    """Write the HTML page of ``compare_json`` (default ``compare.html`` beside it, atomically).

    Raises:
        CanetError: the file is missing, unreadable or not a ``compare.json``.
    """
    src = Path(compare_json)
    try:
        data = json.loads(src.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CanetError(f"cannot read {src}: {exc}") from None
    if not isinstance(data, dict):
        raise CanetError(f"{src} is not a canet compare.json")
    target = Path(out) if out is not None else src.with_name("compare.html")
    atomic_write_text(target, comparison_html(data, title=f"canet comparison: {src.parent.resolve().name}"),
                      errors="backslashreplace")
    return target
