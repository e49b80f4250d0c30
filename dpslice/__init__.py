"""dpslice: correctness and sync-safety suite for the DP-local slice.

Engines with data-parallel attention gather every rank's tokens into one buffer,
then slice each rank's rows back out.  dpslice models that buffer (:class:`DPLayout`),
locates a rank's rows in exact Python ints (:func:`dp_local_slice`) and checks any
implementation against the model (``dpslice check``).  Submodules are imported on
demand, so ``import dpslice`` stays light and never touches CUDA.
"""

from dpslice._version import __version__
from dpslice.layout import PAD_ROW, DPLayout, Mode, Owns, RowSpan, SliceCall
from dpslice.reference import DPSlice, ForwardBatchLike, dp_local_slice, get_dp_local_slice_cpu

__all__ = [
    "PAD_ROW",
    "DPLayout",
    "DPSlice",
    "ForwardBatchLike",
    "Mode",
    "Owns",
    "RowSpan",
    "SliceCall",
    "__version__",
    "dp_local_slice",
    "get_dp_local_slice_cpu",
]
