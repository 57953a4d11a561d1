"""Entry point of the ``speechloop`` command: one typer app with a group per area.

Each group lives in its own module and imports heavy libraries (torch, funasr) only
inside its commands, so ``speechloop --help`` and the data commands start fast.
"""

from __future__ import annotations

import typer

from speechloop.cli import asr, data, deploy, models, retrain, serve, spk

app = typer.Typer(
    name="speechloop",
    help="Serve customised speech models and keep them improving.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(data.app, name="data", help="Generate, ingest and inspect labelled audio.")
app.add_typer(
    models.app,
    name="models",
    help="Model registry: list, show, promote, roll back, verify, repair.",
)
app.add_typer(asr.app, name="asr", help="Hotword ASR (SeACo-Paraformer).")
app.add_typer(spk.app, name="spk", help="Speaker verification (ERes2NetV2).")
app.add_typer(deploy.app, name="deploy", help="What serves: status, redeploy, roll back.")
app.add_typer(retrain.app, name="retrain", help="Retrain a model on new batches, gate, deploy.")

bootstrap_app = typer.Typer(help="Train the small seed models from the synthetic corpus.")
bootstrap_app.command("asr")(asr.bootstrap)
bootstrap_app.command("spk")(spk.bootstrap)
app.add_typer(bootstrap_app, name="bootstrap")

# DESIGN.md: operators roll back with `speechloop rollback asr|spk`: the same command
# as `speechloop deploy rollback` (one use-case, through the configured deployer).
app.command("rollback", help="Roll a model kind back to its previous (or a named) version.")(
    deploy.rollback
)


app.command("serve", help="Serve ASR and speaker verification over REST (BentoML).")(serve.serve)


def main() -> None:
    """Run the CLI."""
    app()


if __name__ == "__main__":
    main()
