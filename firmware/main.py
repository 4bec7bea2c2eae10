"""main: the firmware's entry point, on a board and on a PC.

On MicroPython (copy ``ctfw_*.py`` and this file to the board) it reads ``ctfw_config.json``,
e.g. ``{"kind": "signal", "id": "ctl-r1c1", "uart": 0, "baud": 115200, "lockstep": true}``,
and serves that UART forever. Under CPython::

    python firmware/main.py --kind signal --id ctl-r1c1

runs the same code on a pseudo-terminal and prints the port to give the bridge
(``citytwin bridge serial --port /dev/pts/N``); ``citytwin firmware-emulator`` does the same
from the installed package.
"""

import sys


def build(kind, device_id, lockstep=False):
    """The board of ``kind`` (``signal`` or ``meter``)."""
    if kind == "signal":
        from ctfw_signal import SignalBoard

        return SignalBoard(device_id, lockstep)
    if kind == "meter":
        from ctfw_meter import MeterBoard

        return MeterBoard(device_id, lockstep)
    raise ValueError("unknown board kind " + str(kind))


def board_main():
    """MicroPython: serve the UART named in ctfw_config.json."""
    import json

    import machine
    from ctfw_device import Link

    try:
        with open("ctfw_config.json") as f:
            cfg = json.load(f)
    except OSError:
        cfg = {}
    uart = machine.UART(cfg.get("uart", 0), baudrate=cfg.get("baud", 115200), timeout=0,
                        rxbuf=2048)
    board = build(cfg.get("kind", "signal"), cfg.get("id", "ctl-r1c1"),
                  cfg.get("lockstep", False))
    Link(board, uart, hb_ms=cfg.get("hb_ms", 1000)).run()


def pc_main():
    """CPython: serve a fresh pseudo-terminal until Ctrl-C."""
    import argparse

    from ctfw_device import Link
    from ctfw_port import open_pty

    parser = argparse.ArgumentParser(description="citytwin reference firmware on a pty")
    parser.add_argument("--kind", choices=("signal", "meter"), required=True)
    parser.add_argument("--id", dest="device_id", required=True)
    parser.add_argument("--lockstep", action="store_true")
    parser.add_argument("--hb-ms", type=int, default=1000)
    args = parser.parse_args()
    port = open_pty()
    print(port.path, flush=True)
    link = Link(build(args.kind, args.device_id, args.lockstep), port, hb_ms=args.hb_ms)
    try:
        link.run()
    except KeyboardInterrupt:
        link.bye()
    finally:
        port.close()


if __name__ == "__main__":
    if sys.implementation.name == "micropython":
        board_main()
    else:
        pc_main()
