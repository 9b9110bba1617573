"""``python -m bench`` is the ``crlbench`` command."""

from bench.cli import main

raise SystemExit(main())
