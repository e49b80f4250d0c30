"""``python -m dpslice``: the same command line as the ``dpslice`` script."""

from dpslice.cli import main

raise SystemExit(main())
