"""Serial firmware bridge: microcontroller devices on a serial line, mapped onto the MQTT
device contract.

Not built yet (issue 6).
"""
