"""Child process of compare_sumo.py: run citytwin on a SUMO net and routes, print KPIs as JSON.

Runs in its own process so that its wall time and peak memory are its own.
"""

from __future__ import annotations

import json
import sys

from citytwin.model.city import City
from citytwin.model.config import SimConfig
from citytwin.model.sumo_net import read_sumo_net
from citytwin.model.sumo_routes import read_sumo_routes


def main() -> None:
    net_path, rou_path, end = sys.argv[1], sys.argv[2], float(sys.argv[3])
    net = read_sumo_net(net_path)
    demand = read_sumo_routes(rou_path, net)
    city = City(net, demand, rng=1, config=SimConfig(mesa_agents=False, reroute_period=0))
    city.compile()  # the stepping loop's figures leave out loading the kernels, as SUMO's UPS
    city.run_until_done(end)  # leaves out loading the network; whole-process time has both
    print(json.dumps(city.kpis()))


if __name__ == "__main__":
    main()
