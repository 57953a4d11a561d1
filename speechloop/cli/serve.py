"""``speechloop serve``: start the BentoML service on the embedded default.

The core stays framework-free: this command checks the service settings (API keys),
makes sure the registry has something to serve, then replaces itself with
``python -m bentoml serve service.app:Gateway`` (run from the checkout that holds
``service/``), so signals reach BentoML directly.

On an empty registry (no version of a kind and no pin) the shipped seed is published
as the first version, with its ONNX graphs, and made production
(:func:`speechloop.publishing.publish_seed`): the server then serves registry versions
only, never exports, and never imports torch.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from speechloop.cli.common import cli_errors, err_console

REPO_ROOT = Path(__file__).resolve().parents[2]
ENTRY = "service.app:Gateway"


def service_root() -> Path:
    """The directory holding ``service/`` (the checkout this package runs from)."""
    if not (REPO_ROOT / "service" / "app.py").is_file():
        from speechloop.errors import ModelUnavailable

        raise ModelUnavailable(
            f"no service/ next to the speechloop package ({REPO_ROOT}): run from a checkout, "
            "or serve the built bento (bentoml serve speechloop:latest)"
        )
    return REPO_ROOT


def bentoml_command(host: str, port: int, root: Path) -> list[str]:
    """The ``bentoml serve`` command line this starts."""
    return [sys.executable, "-m", "bentoml", "serve", ENTRY, "--host", host,
            "--port", str(port), "--working-dir", str(root)]  # fmt: skip


def ensure_servable(root: Path, *, publish_seeds: bool) -> list[str]:
    """Publish the shipped seed of each kind whose registry is empty and unpinned."""
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))  # service/ lives in the checkout, not the package
    from service.settings import ServiceSettings
    from speechloop.context import build_context
    from speechloop.errors import NotFound

    ctx = build_context(ServiceSettings())  # refuses without API keys unless auth=off
    done = []
    for kind in ("asr", "spk"):
        if not publish_seeds or ctx.pinned_version(kind) is not None:
            continue
        try:
            if ctx.registry.list_versions(kind):
                continue
        except NotFound:  # no models bucket yet
            pass
        from speechloop.publishing import publish_seed

        pub = publish_seed(ctx, kind)
        done.append(f"{kind} {pub.version}")
    return done


def serve(
    port: Annotated[int, typer.Option("--port", "-p", help="HTTP port")] = 3000,
    host: Annotated[str, typer.Option("--host", help="address to listen on")] = "127.0.0.1",
    publish_seeds: Annotated[
        bool,
        typer.Option(
            "--publish-seeds/--no-publish-seeds",
            help="publish the shipped seed when the registry has no version of a kind",
        ),
    ] = True,
) -> None:
    """Serve hotword ASR and speaker verification over REST (``/docs`` for the API).

    API keys: ``SPEECHLOOP_API_KEYS`` (comma-separated) or ``SPEECHLOOP_API_KEYS_FILE``;
    ``SPEECHLOOP_AUTH=off`` serves without keys (local development only).
    """
    from pydantic import ValidationError

    with cli_errors(ValidationError):
        root = service_root()
        for published in ensure_servable(root, publish_seeds=publish_seeds):
            err_console.print(f"published the shipped seed as the first version: {published}")
    cmd = bentoml_command(host, port, root)
    err_console.print(f"serving on http://{host}:{port} (API docs at /docs)")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(cmd[0], cmd)
