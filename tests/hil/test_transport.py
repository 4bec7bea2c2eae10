"""MqttLink against a real broker: delivery, retained, wills, restarts, NODELAY, auth, expiry."""

from __future__ import annotations

import socket
import statistics
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from citytwin.errors import BridgeError
from citytwin.hil.broker import BrokerURL, EmbeddedBroker
from citytwin.hil.transport import MqttLink, MQTTv5, MQTTv311
from tests.hil.conftest import Inbox, wait_for

Connect = Callable[..., tuple[MqttLink, Inbox]]
MakeBroker = Callable[..., EmbeddedBroker]


def needs_mosquitto(broker: EmbeddedBroker, why: str) -> None:
    if broker.kind != "mosquitto":
        pytest.skip(f"amqtt fallback: {why}")


def test_round_trip_delivers_bytes_with_receipt_time(connect: Connect) -> None:
    sub, inbox = connect("sub", [("city/+/state", 1)])
    pub, _ = connect("pub")
    before = time.time()
    pub.publish("city/tl1/state", b"\x00green\xff", qos=1, wait=2.0)
    topic, payload, received = inbox.get()
    assert (topic, payload) == ("city/tl1/state", b"\x00green\xff")
    assert before <= received <= time.time()
    pub.publish("city/tl1/other", b"not subscribed")
    pub.publish("city/tl2/state", b"qos0")
    assert inbox.expect("city/tl2/state") == b"qos0"
    assert pub.messages_out == 3 and sub.messages_in == 2


def test_retained_message_reaches_a_late_subscriber(connect: Connect) -> None:
    pub, _ = connect("pub")
    pub.publish("city/tl1/availability", b"online", qos=1, retain=True, wait=2.0)
    _, late = connect("late", [("city/tl1/availability", 1)])
    assert late.expect("city/tl1/availability") == b"online"

    pub.clear_retained("city/tl1/availability", wait=2.0)
    _, later = connect("later", [("city/tl1/availability", 1)])
    assert "city/tl1/availability" not in later.topics()


def test_will_fires_when_the_socket_closes_without_disconnect(connect: Connect) -> None:
    _, watcher = connect("watcher", [("city/+/availability", 1)])
    device, _ = connect("tl1", will=("city/tl1/availability", b"offline", 1, True))
    device.abort()
    assert not device.connected
    assert watcher.expect("city/tl1/availability") == b"offline"


def test_clean_stop_discards_the_will_unless_asked(connect: Connect) -> None:
    _, watcher = connect("watcher", [("city/+/availability", 1)])
    polite, _ = connect("tl1", will=("city/tl1/availability", b"offline", 1, False))
    polite.stop()
    farewell, _ = connect("tl2", will=("city/tl2/availability", b"offline", 1, False))
    farewell.stop(send_will=True)
    assert watcher.topics() == ["city/tl2/availability"]


def test_will_fires_for_a_hung_client(broker: EmbeddedBroker, connect: Connect) -> None:
    needs_mosquitto(broker, "amqtt never fires the will of a client that hangs")
    _, watcher = connect("watcher", [("city/hung/availability", 1)])
    hung = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="hung", protocol=mqtt.MQTTv5)
    hung.will_set("city/hung/availability", b"offline", qos=1)
    hung.connect("127.0.0.1", broker.url.port, keepalive=1)
    try:
        wait_for(lambda: hung.loop(0.01) == 0 and hung.is_connected(), 2.0, "hung connects")
        started = time.monotonic()  # from now on nobody services the client: no PINGREQ
        # 1.5 keepalives, but mosquitto 2.0 only checks keepalives every ~5 s
        assert watcher.expect("city/hung/availability", timeout=10.0) == b"offline"
        assert time.monotonic() - started >= 1.0
    finally:
        sock = hung.socket()
        if sock is not None:
            sock.close()


def test_link_survives_a_broker_restart(broker: EmbeddedBroker, connect: Connect) -> None:
    events: list[str] = []
    sub, inbox = connect("sub", [("city/#", 1)], on_connect=lambda: events.append("up"),
                         on_disconnect=lambda: events.append("down"))
    pub, _ = connect("pub")
    broker.restart()
    wait_for(lambda: sub.reconnects == 1 and pub.reconnects == 1, 5.0, "both links reconnect")
    assert sub.wait_connected(2.0) and pub.wait_connected(2.0)
    pub.publish("city/after", b"restart", qos=1, wait=2.0)
    assert inbox.expect("city/after") == b"restart"  # resubscribed by itself
    assert events == ["up", "down", "up"]


def test_tcp_nodelay_is_set_after_every_connect(broker: EmbeddedBroker, connect: Connect) -> None:
    link, _ = connect("nodelay")

    def nodelay() -> int:
        sock = link.socket()
        assert sock is not None
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)

    assert nodelay() != 0
    broker.restart()
    wait_for(lambda: link.reconnects == 1 and link.connected, 5.0, "reconnect")
    assert nodelay() != 0


def test_command_reply_round_trip_is_fast(connect: Connect) -> None:
    """QoS 1 command -> device -> QoS 1 reply; Nagle + delayed ACKs would make it ~88 ms."""
    device, commands = connect("device", [("bench/cmd", 1)])
    sim, replies = connect("sim", [("bench/reply", 1)])

    def echo() -> None:  # the device's worker: the callback only enqueued
        while (payload := commands.get()[1]) != b"stop":
            device.publish("bench/reply", payload, qos=1)

    worker = threading.Thread(target=echo)
    worker.start()
    rtts = []
    try:
        for i in range(20):
            sent = time.perf_counter()
            sim.publish("bench/cmd", b"%d" % i, qos=1)
            assert replies.get()[1] == b"%d" % i
            rtts.append(time.perf_counter() - sent)
    finally:
        sim.publish("bench/cmd", b"stop", qos=1)
        worker.join(2.0)
    assert statistics.median(rtts) < 0.020


def test_a_failing_callback_does_not_kill_the_link(broker: EmbeddedBroker,
                                                   connect: Connect) -> None:
    seen: list[bytes] = []

    def fragile(topic: str, payload: bytes, received: float) -> None:
        seen.append(payload)
        if payload == b"boom":
            raise RuntimeError("callee bug")

    link = MqttLink(broker.url, "fragile", [("t", 1)], fragile)
    link.start(timeout=3.0)
    try:
        pub, _ = connect("pub")
        pub.publish("t", b"boom", qos=1, wait=2.0)
        pub.publish("t", b"fine", qos=1, wait=2.0)
        wait_for(lambda: seen == [b"boom", b"fine"], 2.0, "both messages")
        assert link.connected
    finally:
        link.stop()


def test_bad_publishes_and_misuse_are_reported(connect: Connect) -> None:
    link, _ = connect("misuse", start=False)
    link.publish("city/x", b"dropped")  # QoS 0 while down
    assert (link.messages_dropped, link.messages_out) == (1, 0)
    link.start(timeout=3.0)
    with pytest.raises(BridgeError, match="already started"):
        link.start()
    with pytest.raises(BridgeError, match="cannot publish to 'city/#'"):
        link.publish("city/#", b"wildcards are for filters")
    with pytest.raises(ValueError, match="qos"):
        MqttLink(link.url, "bad", [("t", 3)])
    with pytest.raises(BridgeError, match=r"TLS setup .* ca="):
        MqttLink(BrokerURL.parse("mqtts://127.0.0.1?ca=/nonexistent/ca.pem"), "tls")
    with pytest.raises(ValueError, match="will"):
        MqttLink(link.url, "bad", will=("city/+/availability", b"offline", 1, True))
    for bad_filter in ("city/#/x", "city/tl+", ""):
        with pytest.raises(ValueError, match="topic filter"):
            MqttLink(link.url, "bad", [(bad_filter, 0)])


def test_unreachable_broker_is_explained() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    link = MqttLink(BrokerURL("127.0.0.1", port), "lost")
    with pytest.raises(BridgeError, match=r"cannot reach the MQTT broker.*Is it running"):
        link.start(timeout=0.5)
    assert not link.connected


def test_tls_to_a_plain_port_is_explained(broker: EmbeddedBroker) -> None:
    url = BrokerURL.parse(f"mqtts://127.0.0.1:{broker.url.port}?insecure=1")
    link = MqttLink(url, "tls")
    with pytest.raises(BridgeError, match="TLS handshake"):
        link.start(timeout=0.5)


def test_mqtt5_against_a_3_1_1_broker_is_explained(make_broker: MakeBroker) -> None:
    amqtt = make_broker(prefer="amqtt")
    link = MqttLink(amqtt.url, "v5", protocol=MQTTv5)
    with pytest.raises(BridgeError, match=r"Unsupported protocol version.*protocol=3\.1\.1"):
        link.start(timeout=2.0)
    follows_url = MqttLink(amqtt.url, "v311")
    assert follows_url.protocol == MQTTv311


def test_credentials_are_checked(make_broker: MakeBroker) -> None:
    secured = make_broker(users={"alice": "wonder land"})
    wrong = MqttLink(secured.url.with_credentials("alice", "guess"), "alice-1")
    with pytest.raises(BridgeError, match=r"refused the connection.*Check the user name 'alice'"):
        wrong.start(timeout=3.0)
    anonymous = MqttLink(secured.url, "anon")
    with pytest.raises(BridgeError, match="wants a user name and password"):
        anonymous.start(timeout=3.0)
    right = MqttLink(secured.url.with_credentials("alice", "wonder land"), "alice-2")
    right.start(timeout=3.0)
    assert right.connected
    right.stop()


def test_acl_denies_topics(make_broker: MakeBroker, broker_prefer: str | None,
                           connect: Connect) -> None:
    if broker_prefer == "amqtt":
        pytest.skip("amqtt fallback: no ACL files")
    acl = "user alice\ntopic readwrite city/#\n\nuser bob\ntopic read #\n"
    guarded = make_broker(prefer="mosquitto", users={"alice": "a", "bob": "b"}, acl=acl)
    _, bob = connect("bob", [("#", 1)], url=guarded.url.with_credentials("bob", "b"))
    alice, _ = connect("alice", url=guarded.url.with_credentials("alice", "a"))
    alice.publish("secret/plan", b"denied", qos=1, wait=2.0)
    alice.publish("city/plan", b"allowed", qos=1, wait=2.0)
    assert bob.topics() == ["city/plan"]


def test_message_expiry_drops_stale_retained_messages(broker: EmbeddedBroker,
                                                      connect: Connect) -> None:
    needs_mosquitto(broker, "MQTT 3.1.1 has no message expiry")
    pub, _ = connect("pub")
    assert pub.protocol == MQTTv5
    pub.publish("city/tl1/stale", b"old", qos=1, retain=True, expiry=1.0, wait=2.0)
    pub.publish("city/tl1/fresh", b"kept", qos=1, retain=True, wait=2.0)
    _, early = connect("early", [("city/tl1/+", 1)])
    assert sorted(early.topics()) == ["city/tl1/fresh", "city/tl1/stale"]
    time.sleep(2.1)  # MessageExpiryInterval has whole-second resolution
    _, late = connect("late", [("city/tl1/+", 1)])
    assert late.topics() == ["city/tl1/fresh"]
