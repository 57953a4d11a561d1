"""The ``speechloop`` command line (typer). Commands are thin: they call the core."""
