"""``python -m dpslice.distributed``: one rank of the round trip, as torchrun starts it."""

from __future__ import annotations

from dpslice.distributed.torchrun import main
from dpslice.distributed.worker import exit_rank

if __name__ == "__main__":
    exit_rank(main())
