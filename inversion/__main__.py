"""``python -m inversion <command> [args]``: see :mod:`inversion.cli`."""

from inversion.cli import main

raise SystemExit(main())
