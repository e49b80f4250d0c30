"""What differs between the torch releases the tests run on, in one place."""

from __future__ import annotations

import torch

#: The torch function a sync guard names when a tensor-bound slice reads its bounds.
#: Before torch 2.4, slicing with tensor bounds called ``Tensor.__index__`` on each
#: bound as a torch function of its own, ahead of ``Tensor.__getitem__``.
SLICE_SYNC = "Tensor.__getitem__" if torch.__version__ >= (2, 4) else "Tensor.__index__"
