"""Where devices meet: broker addresses and a throwaway MQTT broker for tests and demos.

:class:`BrokerURL` is the one way to name a broker (``mqtt://user:pass@host:1883``,
``mqtts://host:8883?ca=/path/ca.pem``); it never prints its password.

:class:`EmbeddedBroker` runs a private broker on ``127.0.0.1`` and a free port. It prefers a
real Mosquitto child process (what users run in the field) and falls back to an in-process
amqtt broker when no ``mosquitto`` binary is installed. The fallback speaks MQTT 3.1.1 only and
never fires the last will of a hung client, so it warns when chosen::

    with EmbeddedBroker() as broker:
        link = MqttLink(broker.url, "tl-7", ...)

Nothing starts until :meth:`EmbeddedBroker.start`; a started broker is stopped on context
exit, on :meth:`EmbeddedBroker.stop`, when garbage-collected and at interpreter exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from citytwin.errors import BridgeError

__all__ = ["AMQTT_LIMITATIONS", "BrokerURL", "EmbeddedBroker"]

_EXAMPLES = "e.g. mqtt://user:secret@broker.local:1883 or mqtts://broker.local:8883?ca=/etc/ca.pem"
_DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}
_VERSIONS = {"5": "5", "5.0": "5", "3.1.1": "3.1.1", "311": "3.1.1", "4": "3.1.1"}

AMQTT_LIMITATIONS = (
    "the in-process amqtt broker speaks MQTT 3.1.1 only (no MQTT 5: message expiry and "
    "other properties are dropped) and does not fire the last will of a hung client (one "
    "that stops sending but never closes its socket); install mosquitto for both"
)


@dataclass(frozen=True)
class BrokerURL:
    """The address of an MQTT broker, parsed from ``mqtt[s]://[user[:pass]@]host[:port][?opts]``.

    Options (query string): ``ca`` (CA bundle for ``mqtts``), ``insecure=1`` (``mqtts``: do not
    check the server's host name) and ``protocol=5`` or ``protocol=3.1.1`` (the MQTT version to
    speak; links default to 5).

    Attributes:
        host: Host name or IP address.
        port: TCP port.
        tls: Whether to speak TLS (``mqtts``).
        username: User name, or None for anonymous access.
        password: Password; never shown by ``str`` or ``repr``.
        ca: CA certificate bundle to verify the server with (TLS only).
        insecure: Skip the server host name check (TLS only).
        mqtt_version: ``"5"``, ``"3.1.1"`` or None (let the client choose).
    """

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca: Path | None = None
    insecure: bool = False
    mqtt_version: Literal["5", "3.1.1"] | None = None

    @classmethod
    def parse(cls, url: str) -> BrokerURL:
        """Parse a broker URL.

        Args:
            url: ``mqtt://[user[:pass]@]host[:port]`` (port 1883) or ``mqtts://...`` (8883),
                optionally followed by ``?ca=...&insecure=1&protocol=3.1.1``.

        Returns:
            The parsed URL.

        Raises:
            BridgeError: The URL is malformed; the message says what is wrong.
        """
        def bad(problem: str) -> BridgeError:
            return BridgeError(f"bad broker URL {_redact(url)!r}: {problem} ({_EXAMPLES})")

        parts = urlsplit(url.strip())
        if parts.scheme not in _DEFAULT_PORTS:
            raise bad(f"the scheme must be mqtt:// or mqtts://, not {parts.scheme or 'missing'}")
        if not parts.hostname:
            raise bad("the host is missing")
        if parts.path not in ("", "/") or parts.fragment:
            raise bad("a broker URL has no path or #fragment")
        try:
            port = parts.port or _DEFAULT_PORTS[parts.scheme]
        except ValueError:
            raise bad("the port must be a number between 1 and 65535") from None
        tls = parts.scheme == "mqtts"
        options: dict[str, Any] = {}
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key == "ca" and tls:
                if not value:
                    raise bad("ca= needs the path of a PEM file")
                options["ca"] = Path(value).expanduser()
            elif key == "insecure" and tls:
                if value.lower() not in _TRUE | _FALSE:
                    raise bad(f"insecure= takes 1 or 0, not {value!r}")
                options["insecure"] = value.lower() in _TRUE
            elif key == "protocol":
                if value not in _VERSIONS:
                    raise bad(f"protocol= takes 5 or 3.1.1, not {value!r}")
                options["mqtt_version"] = _VERSIONS[value]
            elif key in ("ca", "insecure"):
                raise bad(f"{key}= only applies to TLS; use mqtts://")
            else:
                raise bad(f"unknown option {key!r} (known: ca, insecure, protocol)")
        return cls(
            host=parts.hostname,
            port=port,
            tls=tls,
            username=unquote(parts.username) if parts.username is not None else None,
            password=unquote(parts.password) if parts.password is not None else None,
            **options,
        )

    def with_credentials(self, username: str, password: str | None = None) -> BrokerURL:
        """Return this URL with a user name and password."""
        return replace(self, username=username, password=password)

    def __str__(self) -> str:
        """Render the URL with the password replaced by ``***``."""
        auth = ""
        if self.username is not None:
            auth = quote(self.username, safe="") + (":***" if self.password else "") + "@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        options = []
        if self.ca is not None:
            options.append(f"ca={self.ca}")
        if self.insecure:
            options.append("insecure=1")
        if self.mqtt_version is not None:
            options.append(f"protocol={self.mqtt_version}")
        query = "?" + "&".join(options) if options else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{auth}{host}:{self.port}{query}"

    def __repr__(self) -> str:
        """Show the redacted URL."""
        return f"BrokerURL({str(self)!r})"


def _redact(url: str) -> str:
    """Hide the password of a URL that may not parse."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.split(':', 1)[0]}:***@{host}"


class EmbeddedBroker:
    """A private MQTT broker on 127.0.0.1 for tests, demos and single-machine runs.

    Args:
        prefer: ``"mosquitto"`` (error if not installed), ``"amqtt"`` (always the in-process
            fallback) or None (mosquitto when installed, else amqtt with a warning).
        users: User name -> password. When given, anonymous access is refused.
        acl: Mosquitto ACL file text (``user alice`` / ``topic readwrite city/#``);
            mosquitto only.
        start_timeout: Seconds to wait for the broker to accept connections.
        stop_grace: Seconds a stopping broker gets before it is killed.

    Attributes:
        kind: ``"mosquitto"`` or ``"amqtt"``.
        log_path: The mosquitto log file (kept until :meth:`close`); None for amqtt, which
            logs through :mod:`logging` under the ``amqtt`` logger.

    Raises:
        BridgeError: The requested broker or feature is not available here.
    """

    def __init__(
        self,
        *,
        prefer: Literal["mosquitto", "amqtt"] | None = None,
        users: Mapping[str, str] | None = None,
        acl: str | None = None,
        start_timeout: float = 5.0,
        stop_grace: float = 2.0,
    ) -> None:
        mosquitto = _find_tool("mosquitto")
        if prefer == "mosquitto" and mosquitto is None:
            raise BridgeError("EmbeddedBroker(prefer='mosquitto'): no mosquitto binary found on "
                              "PATH or in /usr/sbin; install mosquitto or use prefer='amqtt'")
        self.kind: Literal["mosquitto", "amqtt"] = (
            "mosquitto" if mosquitto is not None and prefer != "amqtt" else "amqtt")
        self._users = dict(users or {})
        for name in self._users:
            if not name or ":" in name:
                raise BridgeError(f"EmbeddedBroker: bad user name {name!r} (empty or has ':')")
        self._acl = acl
        if self.kind == "mosquitto" and self._users and _find_tool("mosquitto_passwd") is None:
            raise BridgeError("EmbeddedBroker(users=...) needs mosquitto_passwd to hash the "
                              "passwords; install it (package mosquitto) or use prefer='amqtt'")
        if self.kind == "amqtt":
            if acl is not None:
                raise BridgeError("EmbeddedBroker(acl=...) needs mosquitto; the amqtt fallback "
                                  "has no ACL files. Install mosquitto.")
            warnings.warn(f"EmbeddedBroker: {AMQTT_LIMITATIONS}", RuntimeWarning, stacklevel=2)
        self._mosquitto = mosquitto if self.kind == "mosquitto" else None
        self._start_timeout = start_timeout
        self._stop_grace = stop_grace
        self._dir = Path(tempfile.mkdtemp(prefix="citytwin-broker-"))
        self._remove_dir = weakref.finalize(self, shutil.rmtree, self._dir, ignore_errors=True)
        self.log_path: Path | None = (
            self._dir / "mosquitto.log" if self.kind == "mosquitto" else None)
        self._port: int | None = None
        self._stopper: weakref.finalize | None = None

    @property
    def running(self) -> bool:
        """Whether the broker has been started and not stopped since."""
        return self._stopper is not None and self._stopper.alive

    @property
    def url(self) -> BrokerURL:
        """The broker's URL (anonymous; add users with :meth:`BrokerURL.with_credentials`)."""
        if self._port is None:
            raise BridgeError("EmbeddedBroker.url: the broker was never started; call start()")
        version: Literal["3.1.1"] | None = "3.1.1" if self.kind == "amqtt" else None
        return BrokerURL(host="127.0.0.1", port=self._port, mqtt_version=version)

    def start(self) -> BrokerURL:
        """Start the broker (the first time on a free port, later on the same port).

        Returns:
            The URL clients connect to.

        Raises:
            BridgeError: The broker did not come up; the message carries its log tail.
        """
        if self.running:
            return self.url
        if not self._remove_dir.alive:
            raise BridgeError("EmbeddedBroker.start: this broker was closed; create a new one")
        if self._port is None:
            self._port = _free_port()
        if self._mosquitto is not None and self.log_path is not None:
            stop = self._start_mosquitto(self._mosquitto, self.log_path, self._port)
        else:
            stop = _start_amqtt(self._port, self._users, self._dir,
                                self._start_timeout, self._stop_grace)
        self._stopper = weakref.finalize(self, stop)
        return self.url

    def stop(self) -> None:
        """Stop the broker (politely, then killed after the grace period). Idempotent."""
        if self._stopper is not None:
            self._stopper()
            self._stopper = None

    def restart(self) -> BrokerURL:
        """Stop and start again on the same port, as a broker reboot looks to its clients."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop the broker and delete its temporary directory (config, log)."""
        self.stop()
        self._remove_dir()

    def __enter__(self) -> Self:
        """Start the broker and return it."""
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        """Stop the broker and clean up."""
        self.close()

    def __repr__(self) -> str:
        """Say which broker, where, and whether it runs."""
        where = f"127.0.0.1:{self._port}" if self._port else "not started"
        return f"<EmbeddedBroker {self.kind} {where} {'running' if self.running else 'stopped'}>"

    def _start_mosquitto(self, binary: str, log_path: Path, port: int) -> Callable[[], None]:
        """Write the config, launch mosquitto and wait for its port; return its stopper."""
        workdir = self._dir
        # The simulator subscribes to every device: a burst (1,000 meters' births on start)
        # must queue for it, not be dropped at mosquitto's default of 1,000 queued messages.
        # Per-message logging ("log_type all") would cost the broker more than routing.
        lines = [f"listener {port} 127.0.0.1", "set_tcp_nodelay true", "persistence false",
                 "max_queued_messages 1000000", "max_inflight_messages 1000",
                 "log_dest stderr", "log_type error", "log_type warning", "log_type notice",
                 "log_type information",
                 "log_timestamp_format %H:%M:%S"]
        if _is_root():
            lines.append("user root")  # else mosquitto drops to 'mosquitto' and cannot read files
        if self._users:
            pwfile = workdir / "passwd"
            if not pwfile.exists():
                _write_mosquitto_passwords(pwfile, self._users)
            lines += ["allow_anonymous false", f"password_file {pwfile}"]
        else:
            lines.append("allow_anonymous true")
        if self._acl is not None:
            aclfile = workdir / "acl"
            aclfile.write_text(self._acl.strip() + "\n")
            lines.append(f"acl_file {aclfile}")
        config = workdir / "mosquitto.conf"
        config.write_text("\n".join(lines) + "\n")
        with log_path.open("ab") as log:
            proc = subprocess.Popen([binary, "-c", str(config)], stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=log, cwd=workdir)
        stop = _ProcessStopper(proc, self._stop_grace)
        deadline = time.monotonic() + self._start_timeout
        while not _accepts(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                stop()
                why = (f"exited with code {proc.returncode}" if proc.returncode is not None
                       else f"did not open port {port} within {self._start_timeout} s")
                raise BridgeError(f"mosquitto {why}; log tail ({log_path}):\n{_tail(log_path)}")
            time.sleep(0.01)
        return stop


class _ProcessStopper:
    """Terminate a child process, killing it after a grace period (used as a finalizer)."""

    def __init__(self, proc: subprocess.Popen[bytes], grace: float) -> None:
        self._proc, self._grace = proc, grace

    def __call__(self) -> None:
        if self._proc.poll() is not None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(self._grace)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def _start_amqtt(port: int, users: Mapping[str, str], workdir: Path, timeout: float,
                 grace: float) -> Callable[[], None]:
    """Run an amqtt broker on its own event loop in a daemon thread; return its stopper."""
    from amqtt.broker import Broker  # heavy import, only when the fallback is used

    auth: dict[str, Any]
    if users:
        pwfile = workdir / "amqtt-passwd"
        _write_argon2_passwords(pwfile, users)
        auth = {"amqtt.plugins.authentication.FileAuthPlugin": {"password_file": str(pwfile)}}
    else:
        auth = {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}
    config = {"listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
              "plugins": auth}
    loop = asyncio.new_event_loop()
    up = threading.Event()
    failure: list[BaseException] = []

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            broker = Broker(config, loop=loop)
            loop.run_until_complete(broker.start())
        except Exception as exc:  # reported to the starting thread below
            failure.append(exc)
            up.set()
            loop.close()
            return
        up.set()
        loop.run_forever()
        with contextlib.suppress(Exception, asyncio.CancelledError):  # torn down below anyway
            loop.run_until_complete(asyncio.wait_for(broker.shutdown(), grace))
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()

    thread = threading.Thread(target=serve, name=f"amqtt-broker-{port}", daemon=True)
    thread.start()
    stop = _ThreadStopper(loop, thread, grace)
    if not up.wait(timeout) or failure:
        stop()
        why = repr(failure[0]) if failure else f"did not open port {port} within {timeout} s"
        raise BridgeError(f"amqtt broker failed to start: {why}")
    return stop


class _ThreadStopper:
    """Stop an amqtt broker's event loop and join its thread (used as a finalizer)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, thread: threading.Thread,
                 grace: float) -> None:
        self._loop, self._thread, self._grace = loop, thread, grace

    def __call__(self) -> None:
        if not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # closed between the check and the call
                self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(2 * self._grace + 1.0)


def _write_mosquitto_passwords(path: Path, users: Mapping[str, str]) -> None:
    """Hash ``users`` into a mosquitto password file with ``mosquitto_passwd -b``."""
    tool = _find_tool("mosquitto_passwd")
    if tool is None:
        raise BridgeError("mosquitto_passwd not found; it is needed to hash broker passwords")
    path.touch(mode=0o600)
    for name, password in users.items():
        done = subprocess.run([tool, "-b", str(path), name, password], capture_output=True,
                              text=True, check=False)
        if done.returncode != 0:
            raise BridgeError(f"mosquitto_passwd failed for user {name!r}: "
                              f"{(done.stderr or done.stdout).strip()}")


def _write_argon2_passwords(path: Path, users: Mapping[str, str]) -> None:
    """Write an amqtt password file (argon2 hashes, as its FileAuthPlugin expects)."""
    from pwdlib.hashers.argon2 import Argon2Hasher  # an amqtt dependency

    hasher = Argon2Hasher()
    path.write_text("".join(f"{name}:{hasher.hash(pw)}\n" for name, pw in users.items()))
    path.chmod(0o600)


def _find_tool(name: str) -> str | None:
    """Locate a mosquitto executable on PATH or in the Debian sbin/bin directories."""
    for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}"):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def _is_root() -> bool:
    """Whether we run as root (mosquitto then drops to its own user unless told not to)."""
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _accepts(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log file, or a note that it is empty."""
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return "(no log)"
    return "\n".join(text) or "(empty log)"
