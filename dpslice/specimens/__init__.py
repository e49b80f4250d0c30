"""Specimens: deliberately hazardous DP-local slices, to check and to learn from.

Not API to call in production.  Each module here reproduces a slice as an
engine computes it, hazards included, so that ``dpslice check``, the tests and
the docs can show what goes wrong and that the check catches it:

* :mod:`dpslice.specimens.tensor_path`: the GPU-tensor slice that
  :func:`dpslice.dp_local_slice` replaces (0-dim tensor bounds that sync, a
  start cached across batches);
* :mod:`dpslice.specimens.upstream`: models of sglang's and vLLM's slices at
  their call sites, each tagged with its contract (``__dpslice_contract__``).

docs/hazards.md lists every hazard they carry, with the upstream issue numbers.
For a slice to use, see :mod:`dpslice.reference`.
"""
