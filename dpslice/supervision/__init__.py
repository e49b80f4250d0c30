"""Untrusted code run in supervised worker processes: the battery and the round trip.

:mod:`~dpslice.supervision.supervisor` (this process) starts workers, follows their
events, owns every deadline and decides the verdict of a call that never came back;
:mod:`~dpslice.supervision.worker` (the child) loads the target and runs the job.
This layer lies above both the check's core (:mod:`dpslice.check`) and the round
trip (:mod:`dpslice.distributed`), which never import it; the command line and the
pytest plugin run through it.  Private: ``dpslice check`` and the plugin are its faces.
"""
