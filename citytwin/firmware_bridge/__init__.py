"""Serial firmware bridge: microcontroller devices on a serial line join the city through the
MQTT device contract (``docs/hil-protocol.md``), over the framed serial protocol of
``docs/firmware-protocol.md``.

Pure protocol code, no I/O: :mod:`.framing` (bytes <-> frame bodies: COBS and CRC-16),
:mod:`.frames` (frame types and payload layouts), :mod:`.outbox` (sequence numbers, reliable
and per-tick delivery), :mod:`.line` (handshake, liveness, what frames mean) and
:mod:`.mapping` (the device's MQTT topics and messages). I/O: :mod:`.port` (pyserial),
:mod:`.gateway` (one port <-> one MQTT client per device), :mod:`.emulator` (the reference
firmware of ``firmware/`` on a pseudo-terminal) and :mod:`.runner` (``citytwin bridge serial``,
``citytwin firmware-emulator``). Importing any of them starts nothing.
"""
