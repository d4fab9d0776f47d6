"""critmin's version (one place: the package, the CLI, the web app and every output's metadata read it)."""

__version__ = "0.1.0"
