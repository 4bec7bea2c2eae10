"""HIL fixtures: a real broker per test and links that are always stopped afterwards.

The broker is Mosquitto when installed, else the in-process amqtt fallback. Set
``CITYTWIN_TEST_BROKER=amqtt`` (or ``mosquitto``) to force one; the suite must pass with both.
"""

from __future__ import annotations

import os
import queue
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any, Literal

import pytest

from citytwin.hil.broker import BrokerURL, EmbeddedBroker
from citytwin.hil.transport import MqttLink

BROKER_ENV = "CITYTWIN_TEST_BROKER"


def broker_preference() -> Literal["mosquitto", "amqtt"] | None:
    """The broker the environment asks for (None: mosquitto if installed, else amqtt)."""
    value = os.environ.get(BROKER_ENV, "").strip().lower()
    if value in ("", "auto"):
        return None
    if value == "mosquitto":
        return "mosquitto"
    if value == "amqtt":
        return "amqtt"
    raise pytest.UsageError(f"{BROKER_ENV}={value!r}: use mosquitto, amqtt or auto")


class Inbox:
    """An ``on_message`` callback that only enqueues, and the test side that reads it."""

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[str, bytes, float]] = queue.Queue()

    def __call__(self, topic: str, payload: bytes, received: float) -> None:
        self._queue.put_nowait((topic, payload, received))

    def get(self, timeout: float = 2.0) -> tuple[str, bytes, float]:
        """The next message; fails the test after ``timeout`` s."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no message within {timeout} s")

    def expect(self, topic: str, timeout: float = 2.0) -> bytes:
        """The payload of the next message on ``topic`` (others are skipped)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                got, payload, _ = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if got == topic:
                return payload
        pytest.fail(f"no message on {topic!r} within {timeout} s")

    def topics(self, quiet: float = 0.2) -> list[str]:
        """Drain and return the topics of messages until none arrives for ``quiet`` s."""
        seen = []
        while True:
            try:
                seen.append(self._queue.get(timeout=quiet)[0])
            except queue.Empty:
                return seen


def wait_for(condition: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    """Poll ``condition`` every 10 ms; fail the test if it stays false for ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not reached within {timeout} s")
        time.sleep(0.01)


@pytest.fixture
def broker_prefer() -> Literal["mosquitto", "amqtt"] | None:
    """The ``prefer=`` argument for EmbeddedBroker that the environment asks for."""
    return broker_preference()


@pytest.fixture
def make_broker() -> Iterator[Callable[..., EmbeddedBroker]]:
    """Start brokers of the configured kind (kwargs go to EmbeddedBroker); closed afterwards."""
    brokers: list[EmbeddedBroker] = []

    def make(**kwargs: Any) -> EmbeddedBroker:
        kwargs.setdefault("prefer", broker_preference())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # amqtt's limits: tests skip those
            broker = EmbeddedBroker(**kwargs)
        brokers.append(broker)
        broker.start()
        return broker

    yield make
    for broker in brokers:
        broker.close()


@pytest.fixture
def broker(make_broker: Callable[..., EmbeddedBroker]) -> EmbeddedBroker:
    """A started anonymous broker on 127.0.0.1, stopped after the test."""
    return make_broker()


@pytest.fixture
def connect(broker: EmbeddedBroker) -> Iterator[Callable[..., tuple[MqttLink, Inbox]]]:
    """Start links (to ``broker`` unless ``url=`` is given) with an Inbox; stopped afterwards.

    ``connect(client_id, subscriptions=(), url=None, start=True, **MqttLink kwargs)``
    returns ``(link, inbox)``.
    """
    links: list[MqttLink] = []

    def open_link(client_id: str, subscriptions: list[tuple[str, int]] | None = None, *,
                  url: BrokerURL | None = None, start: bool = True,
                  **kwargs: Any) -> tuple[MqttLink, Inbox]:
        inbox = Inbox()
        link = MqttLink(url or broker.url, client_id, subscriptions or [], inbox, **kwargs)
        links.append(link)
        if start:
            link.start(timeout=3.0)
        return link, inbox

    yield open_link
    for link in links:
        link.stop()
