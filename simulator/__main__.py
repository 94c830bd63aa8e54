"""``python -m simulator``: see :mod:`simulator.cli`."""

from .cli import main

raise SystemExit(main())
