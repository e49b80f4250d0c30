"""Slice implementations written apart from dpslice, for the check to judge."""
