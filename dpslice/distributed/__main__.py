"""``python -m dpslice.distributed``: one rank of the round trip, as torchrun starts it."""

from __future__ import annotations

import sys

from dpslice.distributed.torchrun import main

if __name__ == "__main__":
    sys.exit(main())
