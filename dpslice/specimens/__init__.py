"""Deliberately hazardous DP-local slices, to check and to learn from (docs/hazards.md).

:mod:`~dpslice.specimens.tensor_path`: the GPU-tensor slice the reference replaces;
:mod:`~dpslice.specimens.upstream`: sglang's and vLLM's slices at their call sites.
"""
