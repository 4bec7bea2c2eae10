"""Mesa agent types and the fleets that keep their state as arrays: vehicles, signal
controllers, loop detectors. Bulk per-tick work is in :mod:`citytwin.agents.kernels`."""
