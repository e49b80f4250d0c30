"""The battery and the round trip, run through the runner: ``dpslice check``'s and the
pytest plugin's private engine, above both :mod:`dpslice.check` and :mod:`dpslice.distributed`."""
