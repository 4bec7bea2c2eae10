"""Run a command and report its peak resident memory without the caller's memory in it.

A child's ``ru_maxrss`` on Linux includes the resident size of the process it was forked from,
so forking a benchmark from a Python that has numpy and citytwin loaded adds some 200 MB to
it. This launcher is plain Python with nothing imported but ``os``, ``sys`` and ``time``; the
command is forked from here, so its figure carries at most this launcher's few MB (reported as
``launcher_rss_kb``). Prints one JSON line on stderr after the command's own output.
"""

import os
import sys
import time


def main() -> None:
    cmd = sys.argv[1:]
    import resource

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os.execvp(cmd[0], cmd)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - t0
    sys.stdout.flush()
    rc = os.waitstatus_to_exitcode(status)
    sys.stderr.write(f'\n{{"rss_kb": {usage.ru_maxrss}, "launcher_rss_kb": {base}, '
                     f'"wall_s": {wall:.6f}, "rc": {rc}}}\n')


if __name__ == "__main__":
    main()
