"""ctfw_board: what every board shares: identity, sim time and commands.

Runs unchanged on MicroPython and CPython. :class:`Board` is the base of the signal and meter
boards; the serial link (``ctfw_device.Link``) calls its ``on_*`` hooks. Commands are
remembered by id against redelivery (the last 32), refused when expired (their
``valid_until`` is behind the sim time last seen), and answered ``accepted`` then ``done``,
or ``rejected`` with a reason.
"""

import ctfw_wire as w


class CommandRejected(Exception):  # noqa: N818 - a verdict on a command, not a failure
    """A command is refused; its argument is the reason sent in the ack."""


class Board:
    """What every board shares. Subclasses set ``kind`` and ``commands`` and override the
    ``on_*`` hooks and ``execute``."""

    kind = "board"
    commands = ()

    def __init__(self, device_id, lockstep=False):
        self.device_id = device_id
        self.lockstep = lockstep
        self.link = None
        self.sim_time = None
        self.sim_online = None
        self.counters = {}
        self._done = {}
        self._done_order = []

    def count(self, key, n=1):
        self.counters[key] = self.counters.get(key, 0) + n

    def hello(self):
        """The HELLO payload fields this board adds (``caps`` in particular)."""
        return {"caps": {"commands": list(self.commands)}}

    def see_time(self, t):
        self.sim_time = t

    # hooks, called by the Link
    def on_link(self, online):
        pass

    def on_config(self, raw):
        pass

    def on_clock(self, tick, t, dt, mode):
        self.see_time(t)

    def on_calls(self, tick, t, bits, n):
        self.see_time(t)

    def on_input(self, data):
        pass

    def on_error(self, data):
        self.count("errors_received")
        self.last_error = data

    def on_sim_avail(self, online):
        self.sim_online = online

    def poll(self, now_ms):
        pass

    def execute(self, name, args):
        """Run a command; return True when done at once. Raise CommandRejected to refuse."""
        raise CommandRejected("unknown_command")

    # commands
    def on_cmd(self, data):
        cmd_id = data.get("id")
        if not isinstance(cmd_id, str) or not cmd_id:
            self.count("bad_commands")
            return
        t = data.get("t")
        if isinstance(t, (int, float)) and (self.sim_time is None or t > self.sim_time):
            self.sim_time = t
        if cmd_id in self._done:
            self.count("duplicate_commands")
            status, reason = self._done[cmd_id]
            self.ack(cmd_id, status, reason)
            return
        name, args = data.get("name"), data.get("args")
        until = data.get("valid_until")
        try:
            if not isinstance(args, dict):
                args = {}
            if isinstance(until, (int, float)) and self.sim_time is not None \
                    and until < self.sim_time:
                raise CommandRejected("expired")
            if name not in self.commands:
                raise CommandRejected("unknown_command")
            finished = self.execute(name, args)
        except CommandRejected as exc:
            self.count("commands_rejected")
            self.ack(cmd_id, "rejected", str(exc.args[0]) if exc.args else "rejected")
            return
        self.count("commands_accepted")
        self.ack(cmd_id, "accepted")
        if finished:
            self.ack(cmd_id, "done")

    def ack(self, cmd_id, status, reason=""):
        """Send a command's ack, and remember it against redelivery (last 32 ids)."""
        if cmd_id not in self._done:
            self._done_order.append(cmd_id)
            if len(self._done_order) > 32:
                self._done.pop(self._done_order.pop(0), None)
        self._done[cmd_id] = (status, reason)
        out = {"cmd_id": cmd_id, "status": status}
        if reason:
            out["reason"] = reason[:256]
        if self.link is not None:
            self.link.send_message(w.CH_ACK, out, reliable=True)
