"""A HIL session: broker, simulator link, emulated device processes and the bridge, together.

:func:`run_session` is what ``citytwin run`` does for a scenario with a ``[hil]`` table: start
the embedded broker (or use the one given by URL), connect the simulator, start one emulated
device process per device unless real devices will come, wait for the devices' births, step the
city through the bridge, and tear everything down again whatever happens. :func:`replay_session`
repeats a recorded session from its device log, without broker or devices.
"""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from citytwin.errors import BridgeError, ScenarioError
from citytwin.hil.bridge import HilBridge
from citytwin.hil.broker import BrokerURL, EmbeddedBroker
from citytwin.hil.protocol import encode, topic
from citytwin.hil.record import FILE_NAME, Recorder, read_records
from citytwin.hil.transport import MqttLink
from citytwin.model.city import City
from citytwin.scenarios.loader import Scenario

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionOptions:
    """How a HIL session runs (the ``citytwin run`` flags)."""

    broker: str | None = None       # URL of an external broker; None: embedded
    clock: str | None = None        # fast | realtime | lockstep; None: the scenario's
    factor: float | None = None     # realtime factor; None: the scenario's
    strict: bool = False            # fail at the first realtime overrun
    emulate: bool = True            # start an emulated process per device


def run_session(scenario: Scenario, city: City, out_dir: Path, options: SessionOptions,
                duration: float | None = None,
                callback: Callable[[float], None] | None = None) -> HilBridge:
    """Run ``city`` with its scenario's devices attached; the device log goes to ``out_dir``.

    Returns:
        The bridge, for its :meth:`~HilBridge.kpis`.

    Raises:
        BridgeError: the broker or a link failed.
    """
    spec = scenario.spec.hil
    if spec is None:
        raise ScenarioError(f"scenario {scenario.name!r} has no [hil] table")
    out_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if options.broker:
            url = BrokerURL.parse(options.broker)
            url_text = options.broker
        else:
            broker = stack.enter_context(EmbeddedBroker())
            url = broker.start()
            url_text = str(url)
            log.info("embedded %s broker at %s", broker.kind, url)
        recorder = Recorder(out_dir / FILE_NAME)
        bridge = HilBridge(city, spec, recorder=recorder, clock=options.clock,
                           factor=options.factor, strict=options.strict)
        connect(bridge, url, stack)
        if options.emulate:
            stack.enter_context(_emulated_devices(bridge, url_text, out_dir / "devices"))
        missing = bridge.wait_for_devices(spec.wait_for_devices)
        if missing:
            log.warning("devices not online after %g s: %s (their junctions run their own "
                        "programs)", spec.wait_for_devices, ", ".join(missing))
        dt = city.config.dt
        if duration is not None:
            bridge.run(round(duration / dt), callback=callback)
        else:
            bridge.run(round(scenario.spec.max_duration / dt), stop_when_done=True,
                       callback=callback)
    return bridge


def connect(bridge: HilBridge, url: BrokerURL, stack: contextlib.ExitStack) -> MqttLink:
    """Connect the simulator's MQTT link for ``bridge`` and start the bridge (announce it,
    publish the devices' configs); ``stack`` closes both again.

    Raises:
        BridgeError: the broker refused or did not answer.
    """
    avail = topic(bridge.site, "sim", "sim", "avail")
    # after a reconnect the broker may have fired the will: say online again
    link = MqttLink(url, f"citytwin-sim-{bridge.site}", bridge.subscriptions(),
                    bridge.on_message, will=bridge.will(),
                    on_connect=lambda: link.publish(avail, encode({"status": "online"}), 1,
                                                    True))
    link.start()
    stack.callback(link.stop)
    bridge.publisher = link
    stack.callback(bridge.close)
    bridge.start()
    return link


@contextlib.contextmanager
def _emulated_devices(bridge: HilBridge, url: str, log_dir: Path) -> Iterator[None]:
    """One ``citytwin device`` process per device; stopped (SIGTERM, then kill) on exit."""
    log_dir.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for twin in bridge.twins.values():
            cmd = [sys.executable, "-m", "citytwin", "device", twin.kind, "--id",
                   twin.device_id, "--broker", url, "--site", bridge.site]
            if twin.lockstep:
                cmd.append("--lockstep")
                if twin.kind == "meter":  # a lockstep device answers every tick
                    cmd += ["--period", repr(bridge.city.config.dt)]
            with (log_dir / f"{twin.device_id}.log").open("wb") as f:
                procs.append(subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT,
                                              stdin=subprocess.DEVNULL))
        yield
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def replay_session(run_dir: Path, scenario: Scenario, city: City,
                   callback: Callable[[float], None] | None = None) -> HilBridge:
    """Repeat the session recorded in ``run_dir`` on a freshly built ``city``.

    Raises:
        BridgeError: the run folder has no device log or manifest.
    """
    spec = scenario.spec.hil
    if spec is None:
        raise ScenarioError(f"scenario {scenario.name!r} has no [hil] table")
    path = run_dir / FILE_NAME
    manifest = run_dir / "manifest.json"
    if not path.is_file() or not manifest.is_file():
        raise BridgeError(f"{run_dir}: not a HIL run folder (needs {FILE_NAME} and "
                          f"manifest.json)")
    ticks = round(json.loads(manifest.read_text())["duration_s"] / city.config.dt)
    try:
        records = list(read_records(path))
    except ValueError as exc:
        raise BridgeError(str(exc)) from None
    bridge = HilBridge(city, spec, clock="fast")
    bridge.replay(records, ticks, callback)
    return bridge
