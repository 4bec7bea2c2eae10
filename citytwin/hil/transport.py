"""The wire: one MQTT connection that keeps itself up, for a device or for the city's bridge.

:class:`MqttLink` is a thin wrapper around a paho-mqtt 2.x client that adds what every HIL
participant needs and paho leaves to the caller:

* ``TCP_NODELAY`` on every (re)connected socket. Without it a QoS 1 round trip on loopback
  takes 44-88 ms (Nagle plus delayed ACKs) instead of well under 1 ms.
* Subscriptions are data: they are renewed after every connect, so a broker restart costs
  only the reconnect (backed off from 0.1 s up to 5 s).
* :meth:`MqttLink.start` returns only once the broker accepted the session and acknowledged
  the subscriptions, and turns refusals into a :class:`~citytwin.errors.BridgeError` that
  says what to fix.
* A short default keepalive (5 s), so the broker publishes a hung device's will after 7.5 s
  (Mosquitto 2.0 checks keepalives only every ~5 s, so allow up to ~12 s).

Callbacks run on paho's network thread and must only enqueue (``queue.put_nowait``); any
real work blocks every other message of the link.
"""

from __future__ import annotations

import logging
import math
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from citytwin.errors import BridgeError
from citytwin.hil.broker import BrokerURL

__all__ = ["MQTTv5", "MQTTv311", "MqttLink"]

MQTTv311 = MQTTProtocolVersion.MQTTv311
MQTTv5 = MQTTProtocolVersion.MQTTv5

_log = logging.getLogger(__name__)
_VERSIONS = {"5": MQTTv5, "3.1.1": MQTTv311}
_AUTH_REFUSALS = {"Bad user name or password", "Not authorized"}
_MAX_INFLIGHT = 1000

MessageCallback = Callable[[str, bytes, float], None]
Hook = Callable[[], object]  # the return value is ignored


class MqttLink:
    """One MQTT client connection with resubscription, reconnect backoff and TCP_NODELAY.

    Args:
        url: The broker (credentials and TLS options are taken from it).
        client_id: The MQTT client id, unique per participant.
        subscriptions: ``(topic filter, qos)`` pairs, (re)subscribed on every connect.
        on_message: Called as ``on_message(topic, payload, received)`` with the wall time of
            receipt (:func:`time.time`) on paho's network thread: only enqueue there.
            Exceptions are logged, never raised into paho.
        will: ``(topic, payload, qos, retain)`` the broker publishes if this link dies
            without a clean disconnect.
        protocol: :data:`MQTTv5` or :data:`MQTTv311`; default: the URL's ``protocol=`` or 5.
        keepalive: Seconds between pings; the broker declares the link dead after 1.5x.
        on_connect: Called on the network thread after each successful (re)connect, once the
            subscriptions are sent, e.g. to re-publish a retained birth message.
        on_disconnect: Called on the network thread whenever an established connection ends.
        reconnect_delay: ``(first, cap)`` seconds of the doubling reconnect backoff.

    Raises:
        ValueError: A subscription, the will, the keepalive or a delay is invalid.
        BridgeError: The TLS options or the will are unusable.
    """

    def __init__(
        self,
        url: BrokerURL,
        client_id: str,
        subscriptions: Sequence[tuple[str, int]] = (),
        on_message: MessageCallback | None = None,
        *,
        will: tuple[str, bytes, int, bool] | None = None,
        protocol: int | None = None,
        keepalive: int = 5,
        on_connect: Hook | None = None,
        on_disconnect: Hook | None = None,
        reconnect_delay: tuple[float, float] = (0.1, 5.0),
    ) -> None:
        for topic, qos in subscriptions:
            if not _valid_filter(topic) or qos not in (0, 1, 2):
                raise ValueError(f"subscription ({topic!r}, {qos!r}): need a topic filter "
                                 "('+' and '#' only as whole levels, '#' last) and qos 0-2")
        if will is not None and (not will[0] or "+" in will[0] or "#" in will[0]
                                 or will[2] not in (0, 1, 2)):
            raise ValueError(f"will {will!r}: need a topic without wildcards and qos 0-2")
        if keepalive < 1:
            raise ValueError(f"keepalive must be at least 1 s, not {keepalive}")
        if not 0 < reconnect_delay[0] <= reconnect_delay[1]:
            raise ValueError(f"reconnect_delay {reconnect_delay}: need 0 < first <= cap")
        self._url = url
        self._client_id = client_id
        self._subscriptions = tuple((topic, int(qos)) for topic, qos in subscriptions)
        self._on_message = on_message
        self._will = will
        if protocol is not None and protocol not in (MQTTv311, MQTTv5):
            raise ValueError(f"protocol must be MQTTv5 or MQTTv311, not {protocol!r}")
        self._protocol = MQTTProtocolVersion(protocol or _VERSIONS[url.mqtt_version or "5"])
        self._keepalive = int(keepalive)
        self._hooks = (on_connect, on_disconnect)
        self._lock = threading.Lock()
        self._ready = threading.Event()    # connected and subscriptions acknowledged
        self._settled = threading.Event()  # first outcome of start(): ready or refused
        self._refusal: ReasonCode | None = None
        self._refused_topics: list[str] = []
        self._sub_mid: int | None = None
        self._connected = False
        self._ever_connected = False
        self._running = False
        self._aborting = False
        self.messages_in = 0
        self.messages_out = 0
        self.messages_dropped = 0
        self.reconnects = 0
        self._client = self._make_client(reconnect_delay)

    def _make_client(self, reconnect_delay: tuple[float, float]) -> mqtt.Client:
        """Build and configure the paho client (no I/O yet)."""
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self._client_id,
                             protocol=self._protocol)
        # paho annotates the delays as int but computes with them as floats
        client.reconnect_delay_set(min_delay=reconnect_delay[0],  # type: ignore[arg-type]
                                   max_delay=reconnect_delay[1])  # type: ignore[arg-type]
        # paho keeps 20 QoS 1 messages in flight: too few for a simulator answering 1,000s of
        # devices per second; the queue beyond is bounded by the 65,535 message ids
        client.max_inflight_messages_set(_MAX_INFLIGHT)
        if self._url.username is not None:
            client.username_pw_set(self._url.username, self._url.password)
        if self._url.tls:
            try:
                client.tls_set(ca_certs=str(self._url.ca) if self._url.ca else None)
                client.tls_insecure_set(self._url.insecure)
            except (ValueError, OSError) as exc:  # ssl.SSLError is an OSError
                raise BridgeError(f"TLS setup for {self._url} failed: {exc}; check that ca= "
                                  "names a readable PEM file of CA certificates") from exc
        if self._will is not None:
            topic, payload, qos, retain = self._will
            try:
                client.will_set(topic, payload, qos, retain)
            except (ValueError, TypeError) as exc:
                raise BridgeError(f"MqttLink {self._client_id!r}: bad will {self._will!r}: "
                                  f"{exc}") from exc
        client.on_socket_open = self._handle_socket_open
        client.on_connect = self._handle_connect
        client.on_subscribe = self._handle_subscribe
        client.on_disconnect = self._handle_disconnect
        client.on_message = self._handle_message
        return client

    @property
    def url(self) -> BrokerURL:
        """The broker this link talks to."""
        return self._url

    @property
    def client_id(self) -> str:
        """The MQTT client id."""
        return self._client_id

    @property
    def protocol(self) -> MQTTProtocolVersion:
        """The MQTT protocol version in use (:data:`MQTTv5` or :data:`MQTTv311`)."""
        return self._protocol

    @property
    def connected(self) -> bool:
        """Whether the broker currently accepts this link's session."""
        return self._connected

    def wait_connected(self, timeout: float) -> bool:
        """Wait until connected and subscribed; return False if ``timeout`` s passed first."""
        return self._ready.wait(timeout)

    def socket(self) -> socket.socket | None:
        """The current network socket (for diagnostics such as ``getsockopt``), or None."""
        sock = self._client.socket()
        return sock if isinstance(sock, socket.socket) else None

    def start(self, timeout: float = 5.0) -> None:
        """Connect, start the network thread and wait until the subscriptions are live.

        Args:
            timeout: Seconds to wait for the broker's CONNACK and SUBACK. Each connect
                attempt, now and on reconnects, is also bounded by it (clamped to 1-5 s).

        Raises:
            BridgeError: The broker refused the session (e.g. bad credentials), refused a
                subscription, or did not answer in time; the link is stopped again.
        """
        if self._running:
            raise BridgeError(f"MqttLink {self._client_id!r} is already started")
        self._settled.clear()
        self._refusal, self._refused_topics, self._aborting = None, [], False
        # a connect attempt (TCP + TLS handshake) may hang on a wrong port; bound it
        self._client.connect_timeout = min(5.0, max(1.0, timeout))
        try:
            self._client.connect_async(self._url.host, self._url.port, self._keepalive)
        except (ValueError, OSError) as exc:
            raise BridgeError(f"cannot connect to {self._url}: {exc}") from exc
        self._client.loop_start()
        self._running = True
        problem = None
        if not self._settled.wait(timeout):
            problem = _diagnose_silence(self._url, timeout)
        elif self._refusal is not None:
            problem = _refusal_message(self._url, self._refusal)
        elif self._refused_topics:
            problem = (f"the MQTT broker at {self._url} refused the subscription(s) "
                       f"{', '.join(self._refused_topics)} of {self._client_id!r}; "
                       "check the broker's ACL for this user")
        if problem is not None:
            self.stop()
            raise BridgeError(problem)

    def stop(self, *, send_will: bool = False, timeout: float = 2.0) -> None:
        """Disconnect cleanly (the broker then discards the will) and stop the network thread.

        Args:
            send_will: Publish the will anyway (MQTT 5: DISCONNECT reason 0x04; 3.1.1: an
                explicit publish first), e.g. to announce a planned shutdown.
            timeout: Seconds to wait for that will publication to leave.
        """
        if not self._running:
            return
        if send_will and self._will is not None and self._connected:
            if self._protocol == MQTTv5:
                self._client.disconnect(ReasonCode(PacketTypes.DISCONNECT,
                                                   "Disconnect with will message"))
            else:
                topic, payload, qos, retain = self._will
                try:
                    self.publish(topic, payload, qos=qos, retain=retain, wait=timeout)
                except BridgeError as exc:
                    _log.warning("%s: will not sent on stop: %s", self._client_id, exc)
                self._client.disconnect()
        else:
            self._client.disconnect()
        self._client.loop_stop()
        self._running = False
        self._connected = False
        self._ready.clear()

    def abort(self) -> None:
        """Drop the connection without DISCONNECT, as a crash or power cut would.

        The broker sees the socket close and publishes the will. The link stays stopped.
        """
        if not self._running:
            return
        self._aborting = True
        shutdown = getattr(self._client.socket(), "shutdown", None)
        if shutdown is not None and self._connected:
            try:
                shutdown(socket.SHUT_RDWR)  # the network thread sees EOF and stops paho
            except OSError:
                self._client.disconnect()
        else:
            self._client.disconnect()
        self._client.loop_stop()
        self._running = False
        self._connected = False
        self._ready.clear()

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False,
                expiry: float | None = None, *, wait: float | None = None) -> None:
        """Publish a message.

        Args:
            topic: The topic (no wildcards).
            payload: The bytes to send.
            qos: 0, 1 or 2.
            retain: Whether the broker keeps it for late subscribers.
            expiry: Seconds after which the broker drops it undelivered (MQTT 5
                MessageExpiryInterval, rounded up to whole seconds; ignored on 3.1.1).
            wait: Block until the broker acknowledged it (QoS 1/2) or it was sent (QoS 0).

        While the link is down, QoS 1/2 messages are queued for the next connection and
        QoS 0 messages are dropped (counted in ``messages_dropped``).

        Raises:
            BridgeError: The topic or payload is invalid, paho's queue is full, or ``wait``
                expired (or the link is down) before the acknowledgement.
        """
        properties = None
        if expiry is not None and self._protocol == MQTTv5:
            if expiry <= 0:
                raise BridgeError(f"publish to {topic!r}: expiry must be > 0 s, not {expiry}")
            properties = Properties(PacketTypes.PUBLISH)
            properties.MessageExpiryInterval = max(1, math.ceil(expiry))
        try:
            info = self._client.publish(topic, payload, qos, retain, properties)
        except (ValueError, TypeError) as exc:
            raise BridgeError(f"cannot publish to {topic!r}: {exc}") from exc
        if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN and qos == 0:
            with self._lock:
                self.messages_dropped += 1
            return
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            raise BridgeError(f"publish to {topic!r} failed: {mqtt.error_string(info.rc)}")
        with self._lock:
            self.messages_out += 1
        if wait is not None:
            if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
                raise BridgeError(f"publish to {topic!r}: link is down; the message is queued "
                                  "and goes out after the reconnect")
            info.wait_for_publish(wait)
            if not info.is_published():
                raise BridgeError(f"publish to {topic!r} not acknowledged within {wait} s")

    def clear_retained(self, topic: str, *, wait: float | None = None) -> None:
        """Delete the broker's retained message on ``topic`` (empty retained payload, QoS 1)."""
        self.publish(topic, b"", qos=1, retain=True, wait=wait)

    def __repr__(self) -> str:
        """Show the client id, broker and state."""
        state = "connected" if self._connected else "running" if self._running else "stopped"
        return f"<MqttLink {self._client_id!r} {self._url} {state}>"

    # paho callbacks: network thread; keep them short.

    def _handle_socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        setsockopt = getattr(sock, "setsockopt", None)  # websocket wrappers have none
        if setsockopt is not None:
            try:
                setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError as exc:
                _log.warning("%s: cannot set TCP_NODELAY: %s", self._client_id, exc)

    def _handle_connect(self, client: mqtt.Client, userdata: Any, flags: Any,
                        reason: ReasonCode, properties: Properties | None) -> None:
        if reason.is_failure:
            self._refusal = reason
            _log.warning("%s: %s", self._client_id, _refusal_message(self._url, reason))
            self._settled.set()
            return
        self._refusal = None
        with self._lock:
            if self._ever_connected:
                self.reconnects += 1
            self._ever_connected = True
        self._connected = True
        if self._subscriptions:
            _, self._sub_mid = client.subscribe(list(self._subscriptions))
        else:
            self._ready.set()
            self._settled.set()
        self._call_hook(0)

    def _handle_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                          reasons: list[ReasonCode], properties: Properties | None) -> None:
        if mid != self._sub_mid:
            return
        refused = [topic for (topic, _), reason in zip(self._subscriptions, reasons, strict=False)
                   if reason.is_failure]
        if refused:
            _log.warning("%s: broker refused subscription(s) %s", self._client_id, refused)
        self._refused_topics = refused
        self._ready.set()
        self._settled.set()

    def _handle_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any,
                           reason: ReasonCode, properties: Properties | None) -> None:
        was_connected, self._connected = self._connected, False
        self._ready.clear()
        if self._aborting:
            client.disconnect()  # stop paho from reconnecting after a simulated crash
        if was_connected:
            _log.info("%s: disconnected from %s (%s)", self._client_id, self._url, reason)
            self._call_hook(1)

    def _handle_message(self, client: mqtt.Client, userdata: Any,
                        message: mqtt.MQTTMessage) -> None:
        received = time.time()
        with self._lock:
            self.messages_in += 1
        if self._on_message is None:
            return
        try:
            self._on_message(message.topic, bytes(message.payload), received)
        except Exception:
            _log.exception("%s: on_message failed for %s", self._client_id, message.topic)

    def _call_hook(self, which: int) -> None:
        hook = self._hooks[which]
        if hook is None:
            return
        try:
            hook()
        except Exception:
            _log.exception("%s: %s hook failed", self._client_id,
                           ("on_connect", "on_disconnect")[which])


def _valid_filter(topic: str) -> bool:
    """Whether ``topic`` is a valid MQTT topic filter (paho would raise on the network thread)."""
    levels = topic.split("/")
    return bool(topic) and "\0" not in topic and all(
        level in ("+", "#") or ("+" not in level and "#" not in level) for level in levels
    ) and "#" not in levels[:-1]


def _refusal_message(url: BrokerURL, reason: ReasonCode) -> str:
    """Say why a broker refused the CONNECT and what to change."""
    name = str(reason)
    text = f"the MQTT broker at {url} refused the connection: {name}."
    if name in _AUTH_REFUSALS:
        if url.username is None:
            return text + " It wants a user name and password: mqtt://user:password@host:port"
        return text + f" Check the user name {url.username!r} and its password in the URL."
    if name == "Unsupported protocol version":
        return text + (" The broker does not speak this MQTT version; add ?protocol=3.1.1 "
                       "to the URL or pass protocol=MQTTv311.")
    if name == "Client identifier not valid":
        return text + " Use a client id of letters and digits, unique per device."
    return text


def _diagnose_silence(url: BrokerURL, timeout: float) -> str:
    """Explain why no CONNACK came: unreachable, TLS trouble, or a silent server."""
    try:
        raw = socket.create_connection((url.host, url.port), timeout=min(1.0, timeout))
    except OSError as exc:
        return (f"cannot reach the MQTT broker at {url}: {exc.strerror or exc}. "
                "Is it running, and are host and port right?")
    with raw:
        if url.tls:
            context = ssl.create_default_context(cafile=str(url.ca) if url.ca else None)
            context.check_hostname = not url.insecure
            try:
                with context.wrap_socket(raw, server_hostname=url.host):
                    pass
            except (ssl.SSLError, OSError) as exc:
                return f"TLS handshake with {url} failed: {exc}. Check ca= and the port."
            hint = ""
        else:
            hint = " Is it a TLS port (use mqtts://)?"
    return f"the server at {url} accepted TCP but sent no CONNACK within {timeout} s.{hint}"
