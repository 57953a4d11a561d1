"""The try-it page served at ``/ui``: static HTML, JavaScript and CSS, no build step.

The page is public (it holds no secret); the visitor types an API key, which the page
keeps in ``sessionStorage`` for the tab and sends as ``Authorization: Bearer`` on its
``/v1`` calls, so every call it makes is authenticated like any other client's.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"


def mount_ui(app: FastAPI, path: str = "/ui") -> None:
    """Serve the page's files under ``path`` (``path`` itself redirects to ``path/``)."""
    app.mount(path, StaticFiles(directory=STATIC_DIR, html=True), name="ui")
