"""BrokerURL parsing and the EmbeddedBroker's lifecycle (start, stop, restart, no leaks)."""

from __future__ import annotations

import gc
import socket
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import pytest

from citytwin.errors import BridgeError
from citytwin.hil import broker as broker_module
from citytwin.hil.broker import BrokerURL, EmbeddedBroker


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://broker.local", BrokerURL("broker.local", 1883)),
        ("mqtts://broker.local", BrokerURL("broker.local", 8883, tls=True)),
        ("mqtt://alice:s3cret@10.0.0.2:1884",
         BrokerURL("10.0.0.2", 1884, username="alice", password="s3cret")),
        ("mqtt://bob@h", BrokerURL("h", 1883, username="bob")),
        ("mqtt://u:p%40ss%3Aw@h/", BrokerURL("h", 1883, username="u", password="p@ss:w")),
        ("mqtts://h:8884?ca=/etc/ca.pem&insecure=1",
         BrokerURL("h", 8884, tls=True, ca=Path("/etc/ca.pem"), insecure=True)),
        ("mqtts://h?insecure=0", BrokerURL("h", 8883, tls=True)),
        ("mqtt://h?protocol=3.1.1", BrokerURL("h", 1883, mqtt_version="3.1.1")),
        ("mqtt://h?protocol=5", BrokerURL("h", 1883, mqtt_version="5")),
        ("mqtt://[::1]:1999", BrokerURL("::1", 1999)),
    ],
)
def test_parse_good_urls(url: str, expected: BrokerURL) -> None:
    assert BrokerURL.parse(url) == expected


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://h", "scheme"),
        ("broker.local:1883", "scheme"),
        ("mqtt://", "host is missing"),
        ("mqtt://h:99999", "port"),
        ("mqtt://h:abc", "port"),
        ("mqtt://h/city", "no path"),
        ("mqtt://h?ca=/etc/ca.pem", "only applies to TLS"),
        ("mqtts://h?ca=", "PEM"),
        ("mqtts://h?insecure=maybe", "insecure"),
        ("mqtt://h?protocol=4.0", "protocol"),
        ("mqtt://h?qos=1", "unknown option"),
    ],
)
def test_parse_bad_urls_say_what_is_wrong_and_show_an_example(url: str, problem: str) -> None:
    with pytest.raises(BridgeError, match=problem) as caught:
        BrokerURL.parse(url)
    assert "mqtt://user:secret@broker.local:1883" in str(caught.value)


def test_password_is_never_printed() -> None:
    url = BrokerURL.parse("mqtts://alice:hunter2@h:8884?ca=/ca.pem")
    assert url.password == "hunter2"
    assert "hunter2" not in str(url)
    assert "hunter2" not in repr(url)
    assert "hunter2" not in f"{[url]}"
    assert str(url) == "mqtts://alice:***@h:8884?ca=/ca.pem"
    with pytest.raises(BridgeError) as caught:
        BrokerURL.parse("mqtt://alice:hunter2@h:port")
    assert "hunter2" not in str(caught.value)


def test_str_parses_back_without_the_password() -> None:
    url = BrokerURL.parse("mqtts://alice@h:8884?ca=/ca.pem&insecure=1&protocol=3.1.1")
    assert BrokerURL.parse(str(url)) == url
    with_password = url.with_credentials("alice", "pw")
    assert with_password.password == "pw" and "pw" not in str(with_password)


def test_broker_serves_on_loopback_and_stops(broker: EmbeddedBroker) -> None:
    url = broker.url
    assert url.host == "127.0.0.1" and broker.running
    assert accepts(url.port)
    broker.stop()
    assert not broker.running and not accepts(url.port)
    broker.stop()  # idempotent


def test_restart_keeps_the_port(broker: EmbeddedBroker) -> None:
    port = broker.url.port
    assert broker.restart().port == port
    assert broker.running and accepts(port)


def test_mosquitto_logs_to_a_file(broker: EmbeddedBroker) -> None:
    if broker.kind != "mosquitto":
        assert broker.log_path is None
        pytest.skip("amqtt logs through the logging module, not a file")
    assert broker.log_path is not None
    assert "mosquitto version" in broker.log_path.read_text()


def test_context_exit_and_garbage_collection_stop_the_broker(
    broker_prefer: Literal["mosquitto", "amqtt"] | None,
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        embedded = EmbeddedBroker(prefer=broker_prefer)
        forgotten = EmbeddedBroker(prefer=broker_prefer)
    with embedded as running:
        port = running.url.port
        assert accepts(port)
    assert not accepts(port)

    port = forgotten.start().port
    assert accepts(port)
    del forgotten
    gc.collect()
    assert not accepts(port)


def test_amqtt_fallback_warns_what_it_lacks() -> None:
    with pytest.warns(RuntimeWarning, match="MQTT 3.1.1 only") as caught:
        fallback = EmbeddedBroker(prefer="amqtt")
    assert "last will of a hung client" in str(caught[0].message)
    assert fallback.kind == "amqtt"
    with fallback:
        assert fallback.url.mqtt_version == "3.1.1"


def test_missing_tools_are_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(broker_module, "_find_tool", lambda name: None)
    with pytest.raises(BridgeError, match="no mosquitto binary"):
        EmbeddedBroker(prefer="mosquitto")
    monkeypatch.setattr(broker_module, "_find_tool",
                        lambda name: "/usr/sbin/mosquitto" if name == "mosquitto" else None)
    with pytest.raises(BridgeError, match="mosquitto_passwd"):
        EmbeddedBroker(users={"alice": "pw"})


def test_acl_needs_mosquitto() -> None:
    with pytest.raises(BridgeError, match="ACL"):
        EmbeddedBroker(prefer="amqtt", acl="topic read #")


def test_mosquitto_that_dies_shows_its_log(make_broker: Callable[..., EmbeddedBroker],
                                           broker_prefer: str | None) -> None:
    if broker_module._find_tool("mosquitto") is None or broker_prefer == "amqtt":
        pytest.skip("needs mosquitto")
    with pytest.raises(BridgeError, match=r"(?s)exited with code .*log tail"):
        make_broker(prefer="mosquitto", acl="topic sideways city/#")
