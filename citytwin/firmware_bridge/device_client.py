"""The MQTT client of one device on a serial line, as a native device's would be.

A :class:`DeviceClient` is made when a device says ``HELLO``. Its
:class:`~citytwin.hil.transport.MqttLink` is started on a helper thread, so the gateway's
loop never waits for a slow or absent broker; the outcome comes back through ``post`` as a
``("link", token, MqttLink | BridgeError)`` item, and messages the client receives as
``("mqtt", token, (topic, payload))``. On every (re)connect it publishes ``avail`` online
and the ``birth`` (retained); its last will is ``avail`` offline. :meth:`DeviceClient.close`
takes the device offline at once: the retained ``offline`` is published and confirmed by the
broker, then the client disconnects (with its will if the broker could not confirm).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from citytwin.errors import BridgeError
from citytwin.firmware_bridge import mapping
from citytwin.firmware_bridge.frames import Hello
from citytwin.firmware_bridge.line import Inbound
from citytwin.hil.broker import BrokerURL
from citytwin.hil.transport import MqttLink

__all__ = ["DeviceClient"]

_log = logging.getLogger(__name__)


class DeviceClient:
    """The MQTT side of the device in session on a serial line.

    Args:
        hello: The device's ``HELLO``.
        token: Tags every item this client posts.
        broker: The MQTT broker.
        site: The site id of the topics.
        keepalive: MQTT keepalive, seconds.
        connect_timeout: Seconds the broker has to accept the client.
        post: Enqueues an item for the gateway's loop (called on other threads).
    """

    def __init__(self, hello: Hello, token: int, broker: BrokerURL, site: str, keepalive: int,
                 connect_timeout: float, post: Callable[[tuple[str, int, Any]], None]) -> None:
        self.hello = hello
        self.token = token
        self.site = site
        #: The client once it is up (None while it starts, or after a failed start).
        self.link: MqttLink | None = None
        #: When to try the broker again after a failed start.
        self.retry_at = 0.0
        #: The ``seq`` of the next state or ack.
        self.seq = 0
        #: The retained config, given to the device again after a new HELLO.
        self.config: bytes | None = None
        #: The simulator's availability as last heard.
        self.sim_online: bool | None = None
        #: The device has gone; a client still starting is retired when it is up.
        self.leaving = False
        self._broker = broker
        self._keepalive = keepalive
        self._connect_timeout = connect_timeout
        self._post = post
        self._starting: tuple[threading.Thread, MqttLink] | None = None

    @property
    def starting(self) -> bool:
        """Whether the client's start is under way."""
        return self._starting is not None

    @property
    def online(self) -> bool:
        """Whether the client is up and connected."""
        return self.link is not None and self.link.connected

    def start(self) -> None:
        """Start the client on a helper thread (the outcome is posted as a ``link`` item)."""
        hello, token = self.hello, self.token
        holder: list[MqttLink] = []
        link = MqttLink(
            self._broker, mapping.client_id(self.site, hello),
            mapping.subscriptions(self.site, hello),
            lambda t, p, _wall: self._post(("mqtt", token, (t, p))),
            will=mapping.will(self.site, hello), keepalive=self._keepalive,
            on_connect=lambda: self.birth(holder[0]))
        holder.append(link)

        def run() -> None:
            try:
                link.start(self._connect_timeout)
            except BridgeError as exc:
                self._post(("link", token, exc))
            else:
                self._post(("link", token, link))

        thread = threading.Thread(target=run, name=f"mqtt start {hello.device_id}",
                                  daemon=True)
        self._starting = (thread, link)
        thread.start()

    def started(self, outcome: MqttLink | BridgeError, now: float, retry: float) -> None:
        """Take the outcome of :meth:`start`: the client is up, or is tried again ``retry``
        seconds after ``now``; a client whose device has left is retired at once."""
        self._starting = None
        if isinstance(outcome, BridgeError):
            self.retry_at = now + retry
            if not self.leaving:
                _log.error("%s: %s; retrying in %g s", self._who(), outcome, retry)
            return
        if self.leaving:
            self._retire(outcome)
            return
        self.link = outcome
        _log.info("%s: MQTT client up", self._who())

    def birth(self, link: MqttLink | None = None) -> None:
        """Publish ``avail`` online and the ``birth`` (on paho's thread at a reconnect)."""
        link = link or self.link
        if link is None:
            return
        try:
            link.publish(*mapping.avail(self.site, self.hello, True))
            link.publish(*mapping.birth(self.site, self.hello))
        except BridgeError as exc:
            _log.error("%s: birth not published: %s", self._who(), exc)

    def publish(self, event: Inbound) -> None:
        """Publish the device's ``state`` or ``ack`` with the next ``seq``.

        Raises:
            BridgeError: The client is not up, or the publish failed.
            ValueError: The payload cannot be sent as JSON.
        """
        if self.link is None:
            raise BridgeError("the MQTT client is not up")
        self.link.publish(*mapping.uplink(self.site, self.hello, event, self.seq))
        self.seq += 1

    def close(self, wait: bool = False) -> bool:
        """The device has gone: publish its offline and disconnect.

        Args:
            wait: Also wait for a client still starting (at shutdown); otherwise it is
                retired when its outcome arrives (:meth:`started`).

        Returns:
            Whether the client is done (False: still starting, call :meth:`started` later).
        """
        self.leaving = True
        if self.link is not None:
            link, self.link = self.link, None
            self._retire(link)
        if self._starting is None:
            return True
        if not wait:
            return False
        thread, link = self._starting
        thread.join(self._connect_timeout + 2.0)
        self._starting = None
        if link.connected:
            self._retire(link)
        else:
            link.stop()
        return True

    def _retire(self, link: MqttLink) -> None:
        topic, payload, qos, retain = mapping.avail(self.site, self.hello, False)
        try:
            link.publish(topic, payload, qos, retain, wait=1.0)
        except BridgeError as exc:
            _log.warning("%s: offline not confirmed (%s); leaving with the will", self._who(),
                         exc)
            link.stop(send_will=True)
            return
        link.stop()

    def _who(self) -> str:
        return f"{self.hello.kind}/{self.hello.device_id}"
