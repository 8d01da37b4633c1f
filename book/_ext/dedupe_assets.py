"""Sphinx extension: drop repeated inline ``<script>`` lines from every page's head.

Under Jupyter Book 1.0, sphinx-thebe 0.3 and sphinx-togglebutton register their
inline configuration scripts a second time while each page is being written, so
every page declared ``const THEBE_JS_URL`` twice and the browser raised
"Identifier 'THEBE_JS_URL' has already been declared". When the build has
finished, this keeps the first copy of any identical ``<script>`` line in the
``<head>`` of each HTML page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def dedupe_head_scripts(html: str) -> str:
    """Remove ``<script>`` lines that repeat an earlier identical line inside ``<head>``."""
    head_end = html.find("</head>")
    if head_end < 0:
        return html
    seen: set[str] = set()
    kept = []
    for line in html[:head_end].splitlines(keepends=True):
        key = line.strip()
        if key.startswith("<script") and key.endswith("</script>"):
            if key in seen:
                continue
            seen.add(key)
        kept.append(line)
    return "".join(kept) + html[head_end:]


def _on_build_finished(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    for page in Path(app.outdir).rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        fixed = dedupe_head_scripts(text)
        if fixed != text:
            page.write_text(fixed, encoding="utf-8")


def setup(app) -> dict[str, Any]:
    app.connect("build-finished", _on_build_finished)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
