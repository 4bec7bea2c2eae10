"""The city model: road network, demand, routing, the :class:`~citytwin.model.city.City`
(a Mesa model) and its measurements. Imports agents below it; never devices above it."""
