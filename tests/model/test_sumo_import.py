"""SUMO network and demand import, checked against the files themselves and sumolib's own
(slow) link indexing, and run end to end."""

from __future__ import annotations

import gzip
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import sumolib

from citytwin.errors import DemandError, NetworkError
from citytwin.model.city import City
from citytwin.model.demand import Demand, Trip, VehicleType
from citytwin.model.routing import random_trips, route_trips
from citytwin.model.sumo_net import read_sumo_net
from citytwin.model.sumo_routes import read_sumo_routes, write_sumo_routes
from tests.invariants import step_checked

DATA = Path(__file__).resolve().parents[1] / "data"
TLS_NET = DATA / "grid3_tls.net.xml"
PRIORITY_NET = DATA / "grid3_priority.net.xml"
SIDEWALK_NET = DATA / "grid2_sidewalks.net.xml"


@pytest.fixture(scope="module")
def tls_net():
    return read_sumo_net(TLS_NET)


def _file_connections(path: Path) -> dict[tuple[str, int, str, int], ET.Element]:
    root = ET.parse(path).getroot()
    return {(c.get("from"), int(c.get("fromLane")), c.get("to"), int(c.get("toLane"))): c
            for c in root.iter("connection") if not c.get("from").startswith(":")}


def _conn_key(net, c: int) -> tuple[str, int, str, int]:
    fl, tl = int(net.conn_from_lane[c]), int(net.conn_to_lane[c])
    return (net.edge_ids[net.lane_edge[fl]], int(net.lane_ids[fl].rpartition("_")[2]),
            net.edge_ids[net.lane_edge[tl]], int(net.lane_ids[tl].rpartition("_")[2]))


def test_signalised_net_imports_every_element(tls_net):
    root = ET.parse(TLS_NET).getroot()
    normal_edges = [e for e in root.iter("edge") if e.get("function") != "internal"]
    assert tls_net.n_edges == len(normal_edges) == 48
    assert tls_net.n_normal_lanes == sum(len(e.findall("lane")) for e in normal_edges)
    file_conns = _file_connections(TLS_NET)
    assert tls_net.n_connections == len(file_conns)
    lanes = {ln.get("id"): ln for ln in root.iter("lane")}
    next_via = {f'{c.get("from")}_{c.get("fromLane")}': c.get("via")
                for c in root.iter("connection") if c.get("from").startswith(":")}

    def chain_length(via: str | None) -> float:
        return float(lanes[via].get("length")) + chain_length(next_via.get(via)) if via else 0.0

    def chain_speed(via: str | None) -> float:
        return min(float(lanes[via].get("speed")), chain_speed(next_via.get(via))) if via \
            else np.inf

    for c in range(tls_net.n_connections):
        el = file_conns[_conn_key(tls_net, c)]
        # Signal link index and controller as in the file.
        assert tls_net.tls_ids[tls_net.conn_tls[c]] == el.get("tl")
        assert tls_net.conn_link[c] == int(el.get("linkIndex"))
        assert tls_net.conn_direction[c] == el.get("dir")
        # Length through the junction: the chain of internal lanes the connection runs on.
        assert tls_net.lane_length[tls_net.n_normal_lanes + c] == pytest.approx(
            chain_length(el.get("via")))
        # Speed through it: the least of those lanes' limits (turns are slower).
        assert tls_net.lane_speed[tls_net.n_normal_lanes + c] == pytest.approx(
            chain_speed(el.get("via")))
        # A path split by an internal junction (a left turn's) has its wait point where
        # SUMO's vehicles wait, at the end of the first internal lane; others have none.
        via = el.get("via")
        if next_via.get(via):
            assert tls_net.conn_wait[c] == pytest.approx(float(lanes[via].get("length")))
        else:
            assert tls_net.conn_wait[c] == -1.0
    turns = [c for c in range(tls_net.n_connections) if tls_net.conn_direction[c] in "lr"]
    assert turns and all(tls_net.lane_speed[tls_net.n_normal_lanes + c]
                         < tls_net.lane_speed[tls_net.conn_from_lane[c]] for c in turns)
    # Lane lengths and speeds.
    for k, lane_id in enumerate(tls_net.lane_ids):
        assert tls_net.lane_length[k] == pytest.approx(float(lanes[lane_id].get("length")))
        assert tls_net.lane_speed[k] == pytest.approx(float(lanes[lane_id].get("speed")))


def test_signal_programs_match_the_file(tls_net):
    root = ET.parse(TLS_NET).getroot()
    logics = {t.get("id"): t for t in root.iter("tlLogic")}
    assert set(tls_net.tls_ids) == set(logics)
    for program in tls_net.programs:
        el = logics[program.tls_id]
        assert program.kind == el.get("type")
        assert program.offset == float(el.get("offset"))
        assert [(p.state, p.duration) for p in program.phases] == [
            (ph.get("state"), float(ph.get("duration"))) for ph in el.iter("phase")]


@pytest.mark.parametrize("path", [TLS_NET, PRIORITY_NET])
def test_conflicts_match_sumolib_request_matrices(path):
    """Foes and response, indexed independently with sumolib's own (slow) link index."""
    net = read_sumo_net(path)
    sumo = sumolib.net.readNet(str(path), withInternal=True)
    by_key = {}
    for edge in sumo.getEdges(withInternal=False):
        for lane in edge.getLanes():
            for c in lane.getOutgoing():
                by_key[(edge.getID(), lane.getIndex(), c.getTo().getID(),
                        c.getToLane().getIndex())] = c
    conns = [by_key[_conn_key(net, c)] for c in range(net.n_connections)]
    n_foes = n_resp = 0
    for a in range(net.n_connections):
        ca = conns[a]
        node = ca.getJunction()
        foes = set(net.conn_foe[net.conn_foe_ptr[a]:net.conn_foe_ptr[a + 1]].tolist())
        resp = set(net.conn_resp[net.conn_resp_ptr[a]:net.conn_resp_ptr[a + 1]].tolist())
        for b in range(net.n_connections):
            cb = conns[b]
            if a == b or cb.getJunction() is not node:
                assert b not in foes
                continue
            assert (b in foes) == node.areFoes(ca.getJunctionIndex(), cb.getJunctionIndex())
            assert (b in resp) == node.forbids(cb, ca)
        n_foes += len(foes)
        n_resp += len(resp)
    assert n_foes > 0
    # Priority junctions have yield relations; signalised ones leave them to the lights
    # except for permissive left turns.
    assert n_resp > 0


BERLIN_NET = Path(__file__).resolve().parents[2] / "citytwin/scenarios/builtin/berlin.net.xml.gz"


@pytest.mark.parametrize("path", [SIDEWALK_NET, BERLIN_NET], ids=["sidewalks", "berlin"])
def test_conflicts_indexed_like_the_signal_links_when_sidewalks_exist(path):
    """Sidewalk connections into walking areas take no request index. Oracle: a traffic
    light that netconvert named after its one junction numbers the links in request order,
    so a connection's ``linkIndex`` is its row in the junction's request matrix."""
    net = read_sumo_net(path)
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        root = ET.parse(f).getroot()
    requests = {j.get("id"): {int(r.get("index")): (r.get("foes"), r.get("response"))
                              for r in j.iter("request")} for j in root.iter("junction")}
    checked = 0
    for a in range(net.n_connections):
        node = net.junction_ids[net.conn_junction[a]]
        if net.conn_tls[a] < 0 or net.tls_ids[net.conn_tls[a]] != node:
            continue
        rows = requests[node]
        foes_mask, resp_mask = rows[int(net.conn_link[a])]
        foes = set(net.conn_foe[net.conn_foe_ptr[a]:net.conn_foe_ptr[a + 1]].tolist())
        resp = set(net.conn_resp[net.conn_resp_ptr[a]:net.conn_resp_ptr[a + 1]].tolist())
        for b in range(net.n_connections):
            if b == a or net.conn_junction[b] != net.conn_junction[a] or net.conn_tls[b] < 0:
                continue
            bit = int(net.conn_link[b])
            assert (b in foes) == (foes_mask[::-1][bit] == "1"), (a, b)
            assert (b in resp) == (resp_mask[::-1][bit] == "1"), (a, b)
            checked += 1
    assert checked > 100


def test_unsignalised_net_has_no_programs_and_runs_safely(rng):
    net = read_sumo_net(PRIORITY_NET)
    assert net.programs == [] and (net.conn_tls == -1).all()
    trips = random_trips(net, begin=0, end=300, vehs_per_hour=2500, rng=rng)
    city = City(net, Demand(trips=trips), rng=3)
    seen = step_checked(city, 700)
    assert seen["entries"] > 100
    k = city.kpis()
    assert k["vehicles_arrived"] > 0.9 * len(trips) and k["teleports"] == 0


def test_signalised_import_runs_safely_with_sumo_routes(tls_net, tmp_path, rng):
    trips = random_trips(tls_net, begin=0, end=400, vehs_per_hour=3000, rng=rng)
    start, length, edges = route_trips(tls_net, trips)
    routed = [Trip(t.id, t.depart, t.from_edge, t.to_edge,
                   route=tuple(tls_net.edge_ids[e] for e in edges[s:s + m]))
              for t, s, m in zip(trips, start, length, strict=True)]
    rou = write_sumo_routes(routed, {"DEFAULT_VEHTYPE": VehicleType()}, tmp_path / "r.rou.xml")
    demand = read_sumo_routes(rou, tls_net)
    assert [(t.id, t.depart, t.route) for t in demand.trips] == [
        (t.id, t.depart, t.route) for t in routed]
    city = City(tls_net, demand, rng=1)
    seen = step_checked(city, 900)
    assert seen["entries"] > 100
    assert city.kpis()["vehicles_arrived"] >= 0.95 * len(trips)


def test_lanes_closed_to_cars_are_left_out_but_ids_kept():
    net = read_sumo_net(SIDEWALK_NET)
    root = ET.parse(SIDEWALK_NET).getroot()
    sidewalks = [ln.get("id") for ln in root.iter("lane")
                 if ln.get("allow") == "pedestrian" and not ln.get("id").startswith(":")]
    assert sidewalks
    for lane_id in sidewalks:
        with pytest.raises(NetworkError, match="unknown lane"):
            net.lane(lane_id)
    edge = sidewalks[0].rpartition("_")[0]
    assert [net.lane_ids[k] for k in net.lanes_of(net.edge(edge))] == [f"{edge}_1", f"{edge}_2"]
    assert net.lane(f"{edge}_2") == net.lanes_of(net.edge(edge))[1]


def test_gzipped_net_reads_the_same(tmp_path, tls_net):
    gz = tmp_path / "n.net.xml.gz"
    gz.write_bytes(gzip.compress(TLS_NET.read_bytes()))
    net = read_sumo_net(gz)
    assert net.lane_ids == tls_net.lane_ids
    assert np.array_equal(net.conn_foe, tls_net.conn_foe)


def test_broken_network_files_are_refused_with_the_path(tmp_path):
    with pytest.raises(NetworkError, match="no such network file"):
        read_sumo_net(tmp_path / "missing.net.xml")
    cut = tmp_path / "cut.net.xml"
    cut.write_bytes(TLS_NET.read_bytes()[:5000])
    with pytest.raises(NetworkError, match=r"cut\.net\.xml"):
        read_sumo_net(cut)
    empty = tmp_path / "empty.net.xml"
    empty.write_text('<net version="1.20"></net>')
    with pytest.raises(NetworkError, match="no edge"):
        read_sumo_net(empty)


# -- demand -------------------------------------------------------------------------------------
ROUTES = """<routes>
    <vType id="car" accel="2.0" decel="4.0" length="4.5" minGap="2.0" maxSpeed="30"
           speedFactor="normc(1.1,0.1,0.2,2)" tau="1.2" carFollowModel="IDM"/>
    <route id="r0" edges="{a} {b}"/>
    <vehicle id="v0" depart="0" route="r0" type="car" departSpeed="max"/>
    <vehicle id="v1" depart="1:05"><route edges="{a} {b}"/></vehicle>
    <trip id="t0" depart="3" from="{a}" to="{c}" departSpeed="5"/>
    <flow id="f0" begin="0" end="100" period="25" route="r0"/>
    <flow id="f1" begin="0" end="60" number="3" from="{a}" to="{c}" type="car"/>
    <person id="p0" depart="0"><walk edges="{a}"/></person>
</routes>
"""


def _edges(net):
    a = "left0A0"
    b = net.edge_ids[net.successors[1][net.successors[0][net.edge(a)]]]
    c = "C2top2"
    return {"a": a, "b": b, "c": c}


def test_routes_file_reads_types_vehicles_trips_and_flows(tls_net, tmp_path):
    path = tmp_path / "d.rou.xml"
    path.write_text(ROUTES.format(**_edges(tls_net)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        demand = read_sumo_routes(path, tls_net)
    assert any("skipped 1 person" in str(w.message) for w in caught)
    car = demand.vtypes["car"]
    assert (car.accel, car.decel, car.length, car.min_gap, car.max_speed, car.tau,
            car.speed_factor) == (2.0, 4.0, 4.5, 2.0, 30.0, 1.2, 1.1)
    trips = {t.id: t for t in demand.trips}
    assert trips["v0"].route == trips["v1"].route and len(trips["v0"].route) == 2
    assert trips["v1"].depart == 65.0 and trips["v1"].depart_speed == 0.0  # SUMO default
    assert trips["v0"].depart_speed == "max" and trips["t0"].depart_speed == 5.0
    assert trips["t0"].route is None and trips["t0"].to_edge == _edges(tls_net)["c"]
    expanded = demand.expand(np.random.default_rng(0))
    assert [t.id for t in expanded if t.id.startswith("f0.")] == ["f0.0", "f0.1", "f0.2", "f0.3"]
    assert [t.depart for t in expanded if t.id.startswith("f1.")] == [0.0, 20.0, 40.0]
    city = City(tls_net, demand, rng=1)
    city.run_until_done(1000)
    assert city.kpis()["vehicles_arrived"] == len(expanded) == 10


@pytest.mark.parametrize(("body", "match"), [
    ('<vehicle id="x" depart="0" route="nope"/>', "unknown route 'nope'"),
    ('<trip id="x" depart="0" from="{a}" to="ghost"/>', "trip 'x': unknown edge 'ghost'"),
    ('<trip id="x" depart="0" from="{a}" to="{c}" via="{b}"/>', "'via' waypoints"),
    ('<trip id="x" depart="0" from="{a}" to="{c}" type="bus"/>', "unknown vType 'bus'"),
    ('<trip id="x" depart="soon" from="{a}" to="{c}"/>', "depart='soon' is not a number"),
    ('<trip id="x" depart="triggered" from="{a}" to="{c}"/>', "not supported"),
    ('<vehicle id="x" depart="0"><route edges="{a} {b}"/><stop lane="{b}_0"/></vehicle>',
     "<stop> is not supported"),
    ('<flow id="x" begin="0" end="10" from="{a}" to="{c}"/>', "exactly one of"),
    ('<routeDistribution id="d"/>', "route distributions"),
    ('<vType id="t" accel="-1"/>', "accel must be > 0"),
    ('<trip id="x" depart="0" from="{a}" to="{c}"', "not valid XML"),
])
def test_broken_demand_is_refused_with_what_is_wrong(tls_net, tmp_path, body, match):
    path = tmp_path / "bad.rou.xml"
    path.write_text("<routes>\n" + body.format(**_edges(tls_net)) + "\n</routes>\n")
    with pytest.raises(DemandError, match=match) as info:
        read_sumo_routes(path, tls_net)
    assert str(path) in str(info.value)


def test_disconnected_given_route_is_refused(tls_net, tmp_path):
    path = tmp_path / "gap.rou.xml"
    path.write_text('<routes><vehicle id="x" depart="0"><route edges="left0A0 C2top2"/>'
                    "</vehicle></routes>")
    demand = read_sumo_routes(path, tls_net)
    with pytest.raises(DemandError, match="not connected"):
        City(tls_net, demand, rng=1)
