"""Make the SUMO 1.28 traces the fidelity tests compare with, each step of every vehicle.

- ``sumo_idm_trace.csv``: one straight 1,500 m lane (13.89 m/s). A leader departs at 0 s,
  stops 20 s at 600 m and drives on; a follower departs at 10 s, accelerates on the free
  road, closes up, stops behind the standing leader and starts after it.
- ``sumo_queue.net.xml``, ``sumo_queue.rou.xml``, ``sumo_queue.csv``: two 500 m lanes through
  a signal that is red for 60 s, then green; 15 vehicles depart every 3 s at full speed,
  queue at the red light and discharge.

All vehicles are IDM vehicles with citytwin's default vType (accel 2.6, decel 4.5, tau 1,
minGap 2.5, length 5, delta 4, sigma 0) and SUMO's default IDM stepping (0.25 s), run in 1 s
steps with the semi-implicit Euler update (citytwin's).

Needs the ``sumo`` extra (eclipse-sumo); the files are shipped, so the tests do not:

    python tests/data/sumo_traces.py
"""

from __future__ import annotations

import csv
import re
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import sumo

HERE = Path(__file__).parent
BIN = Path(sumo.SUMO_HOME) / "bin"
VTYPE = ('<vType id="car" carFollowModel="IDM" accel="2.6" decel="4.5" emergencyDecel="9" '
         'tau="1" minGap="2.5" length="5" delta="4" sigma="0" speedDev="0"/>')

IDM_NODES = '<nodes><node id="a" x="0" y="0"/><node id="b" x="1500" y="0"/></nodes>'
IDM_EDGES = '<edges><edge id="e" from="a" to="b" numLanes="1" speed="13.89"/></edges>'
IDM_ROUTES = f"""<routes>
  {VTYPE}
  <vehicle id="leader" type="car" depart="0" departSpeed="0" departPos="0">
    <route edges="e"/>
    <stop lane="e_0" endPos="600" duration="20"/>
  </vehicle>
  <vehicle id="follower" type="car" depart="10" departSpeed="0" departPos="0">
    <route edges="e"/>
  </vehicle>
</routes>"""

QUEUE_NODES = """<nodes>
  <node id="a" x="0" y="0"/>
  <node id="b" x="500" y="0" type="traffic_light" tl="T"/>
  <node id="c" x="1000" y="0"/>
</nodes>"""
QUEUE_EDGES = """<edges>
  <edge id="ab" from="a" to="b" numLanes="1" speed="13.89"/>
  <edge id="bc" from="b" to="c" numLanes="1" speed="13.89"/>
</edges>"""
QUEUE_TLS = """<tlLogics>
  <tlLogic id="T" type="static" programID="0" offset="0">
    <phase duration="60" state="r"/>
    <phase duration="100" state="G"/>
  </tlLogic>
</tlLogics>"""
QUEUE_ROUTES = "<routes>\n  " + VTYPE + "\n" + "".join(
    f'  <vehicle id="v{k}" type="car" depart="{3 * k}" departSpeed="max" departLane="best">'
    f'<route edges="ab bc"/></vehicle>\n' for k in range(15)) + "</routes>\n"


def _run(d: Path, nodes: str, edges: str, routes: str, end: int, tls: str = "") -> Path:
    (d / "n.nod.xml").write_text(nodes)
    (d / "n.edg.xml").write_text(edges)
    (d / "r.rou.xml").write_text(routes)
    cmd = [BIN / "netconvert", "-n", d / "n.nod.xml", "-e", d / "n.edg.xml",
           "-o", d / "n.net.xml", "--no-turnarounds"]
    if tls:
        (d / "n.tll.xml").write_text(tls)
        cmd += ["-i", d / "n.tll.xml"]
    subprocess.run(cmd, check=True, capture_output=True)
    subprocess.run([BIN / "sumo", "-n", d / "n.net.xml", "-r", d / "r.rou.xml",
                    "--fcd-output", d / "fcd.xml", "--precision", "8", "--step-length", "1",
                    "--step-method.ballistic", "false", "--no-step-log", "--end", str(end)],
                   check=True, capture_output=True)
    return d / "fcd.xml"


def _write_csv(fcd: Path, out: Path) -> None:
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["time", "id", "lane", "pos", "speed"])
        for step in ET.parse(fcd).getroot().iter("timestep"):
            for v in step.iter("vehicle"):
                w.writerow([step.get("time"), v.get("id"), v.get("lane"), v.get("pos"),
                            v.get("speed")])


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        _write_csv(_run(d, IDM_NODES, IDM_EDGES, IDM_ROUTES, 200), HERE / "sumo_idm_trace.csv")
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        fcd = _run(d, QUEUE_NODES, QUEUE_EDGES, QUEUE_ROUTES, 150, QUEUE_TLS)
        _write_csv(fcd, HERE / "sumo_queue.csv")
        net = re.sub(r"<!--.*?-->\n*", "", (d / "n.net.xml").read_text(), flags=re.S)
        (HERE / "sumo_queue.net.xml").write_text(net)
        (HERE / "sumo_queue.rou.xml").write_text(QUEUE_ROUTES)


if __name__ == "__main__":
    main()
