"""Writing a benchmark's figures: one place, so every results file is written the same way."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_results(path: Path, doc: dict[str, Any]) -> None:
    """Write ``doc`` as JSON to ``path`` atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def write_doc_block(doc_path: Path, begin: str, end: str, body: str) -> None:
    """Replace the text between the ``begin`` and ``end`` markers of ``doc_path`` with
    ``body`` (the file re-read just before); without both markers, say so and leave it."""
    text = doc_path.read_text(encoding="utf-8")
    if begin not in text or end not in text:
        print(f"markers not found in {doc_path}: table not written", flush=True)
        return
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    doc_path.write_text(f"{head}{begin}\n{body}\n{end}{tail}", encoding="utf-8")
