"""Sub-commands of the CLI beyond the core ones in :mod:`bodyscore.cli`.

Each module defines ``register(subparsers) -> None``; :func:`bodyscore.cli.build_parser` calls
it. Together with ``cli.py`` this is the CLI layer: the only code that prints or sets exit codes.
"""
