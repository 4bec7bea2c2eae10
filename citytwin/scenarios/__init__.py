"""Scenario files: a TOML format validated with pydantic, a built-in library, and the glue
that builds a :class:`~citytwin.model.city.City` from a file. Imports the model below it;
the model never imports this package. The format is documented in ``docs/scenarios.md``."""

from citytwin.scenarios.loader import Scenario, builtin_scenarios, load_scenario

__all__ = ["Scenario", "builtin_scenarios", "load_scenario"]
