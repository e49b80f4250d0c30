"""The battery and the round trip, run through the runner (:mod:`dpslice.runner`).

Above both the check (:mod:`dpslice.check`) and the round trip
(:mod:`dpslice.distributed`); private: ``dpslice check`` and the pytest plugin are
its faces.
"""
