"""dpslice: correctness and sync-safety suite for the DP-local slice.

Engines with data-parallel attention gather every rank's tokens into one
buffer, then slice each rank's rows back out.  dpslice models that buffer
(:class:`DPLayout`), locates a rank's rows in exact Python ints
(:func:`dp_local_slice`) and checks any implementation of it against the model
(``dpslice check``).

Submodules, imported on demand so that ``import dpslice`` stays light and never
touches CUDA: :mod:`dpslice.contracts` (the call sites a slice is judged as),
:mod:`dpslice.strategies` (Hypothesis strategies),
:mod:`dpslice.specimens.tensor_path` (the GPU-tensor slice the reference replaces),
:mod:`dpslice.sync` (host-device sync guards), :mod:`dpslice.check` (the
property battery behind ``dpslice check``) and :mod:`dpslice.distributed`
(round trips through real ``torch.distributed`` collectives).
"""

from dpslice._version import __version__
from dpslice.errors import (
    CountExceedsExtentError,
    CountsLengthError,
    CountsUnavailableError,
    InvalidContractError,
    InvalidDPSizeError,
    InvalidGraphExtentError,
    InvalidInputError,
    InvalidLayoutError,
    NegativeCountError,
    NonIntegerError,
    RankOutOfRangeError,
    TensorInputError,
)
from dpslice.layout import PAD_ROW, DPLayout, Mode, Owns, RowSpan, SliceCall
from dpslice.reference import DPSlice, ForwardBatchLike, dp_local_slice, get_dp_local_slice_cpu

__all__ = [
    "PAD_ROW",
    "CountExceedsExtentError",
    "CountsLengthError",
    "CountsUnavailableError",
    "DPLayout",
    "DPSlice",
    "ForwardBatchLike",
    "InvalidContractError",
    "InvalidDPSizeError",
    "InvalidGraphExtentError",
    "InvalidInputError",
    "InvalidLayoutError",
    "Mode",
    "NegativeCountError",
    "NonIntegerError",
    "Owns",
    "RankOutOfRangeError",
    "RowSpan",
    "SliceCall",
    "TensorInputError",
    "__version__",
    "dp_local_slice",
    "get_dp_local_slice_cpu",
]
