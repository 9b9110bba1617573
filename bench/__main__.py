"""``python -m crlbench`` is the ``crlbench`` command."""

from crlbench.cli import console

raise SystemExit(console())
