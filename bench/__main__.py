"""``python -m bench`` is the ``crlbench`` command."""

from bench.cli import console

raise SystemExit(console())
