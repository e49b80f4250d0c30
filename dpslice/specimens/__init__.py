"""Specimens: deliberately hazardous DP-local slices, to check and to learn from.

Not API to call in production: :mod:`~dpslice.specimens.tensor_path` is the GPU-tensor
slice the reference replaces, :mod:`~dpslice.specimens.upstream` models of sglang's and
vLLM's slices at their call sites.  docs/hazards.md lists every hazard they carry.
"""
