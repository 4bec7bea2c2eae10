"""Hardware in the loop: the MQTT bridge that lets real and emulated devices join the city.

Not built yet (issue 4). The model never imports this package: devices will reach a city
only through its inbox and outbox at step boundaries.
"""
