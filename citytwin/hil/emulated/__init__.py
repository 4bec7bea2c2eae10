"""Emulated devices that speak the citytwin HIL contract exactly as real hardware would.

Each kind runs as its own process (``citytwin device signal|drone|meter --id ID --broker URL``)
and is pure logic behind a thin MQTT runner, so tests feed it dicts and read dicts back:

- :mod:`~citytwin.hil.emulated.device`: what every kind shares (sessions, ``seq``, sim time,
  commands with expiry and redelivery memory, ``error`` handling).
- :mod:`~citytwin.hil.emulated.nema_config`, :mod:`~citytwin.hil.emulated.nema` and
  :mod:`~citytwin.hil.emulated.signal`: an actuated NEMA dual-ring signal controller.
- :mod:`~citytwin.hil.emulated.drone`: a drone with missions and failsafes.
- :mod:`~citytwin.hil.emulated.meter`: a utility meter with a deterministic load, curtailment
  and a relay.
- :mod:`~citytwin.hil.emulated.payload` and :mod:`~citytwin.hil.emulated.commands`: reading
  what the simulator sends.
- :mod:`~citytwin.hil.emulated.runner`: the process (link, main loop, signals, exit).

Importing this package imports nothing else.
"""
