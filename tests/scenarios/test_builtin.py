"""The built-in scenarios run to completion as a new user would run them."""

from __future__ import annotations

import pytest

from citytwin.scenarios import builtin_scenarios, load_scenario


@pytest.mark.parametrize("seed", [1, 2])
def test_imported_osm_network_runs_to_completion_without_gridlock(seed):
    """A real OpenStreetMap network we did not generate (SUMO's Berlin extract) with an hour
    of random trips between any two edges: every trip departs, all but a handful arrive, and
    jams resolve without teleports piling up."""
    scenario = load_scenario("berlin")
    city = scenario.build_city(seed=seed)
    scenario.run(city)
    k = city.kpis()
    assert city.finished
    assert k["vehicles_demand"] > 1300 and k["vehicles_unroutable"] == 0
    assert k["vehicles_inserted"] == k["vehicles_demand"]
    assert k["vehicles_arrived"] >= 0.99 * k["vehicles_demand"]
    assert k["teleports"] <= 0.01 * k["vehicles_demand"]
    assert k["mean_time_loss_s"] < k["mean_duration_s"] / 2  # flowing, not crawling


def test_every_builtin_scenario_has_a_description():
    found = builtin_scenarios()
    assert {"downtown", "berlin"} <= set(found)
    assert all(desc.strip() for desc in found.values())
