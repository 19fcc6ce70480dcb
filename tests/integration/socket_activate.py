"""
Start a program with sockets passed the way systemd passes them, for the
tests of socket activation:

    python socket_activate.py [--wrong-pid] NAME=FD [NAME=FD ...] -- PROGRAM ARGS...

Each FD (inherited from the test) becomes descriptor 3, 4, ... in the order
given, C{LISTEN_FDS} their count, C{LISTEN_FDNAMES} the NAMEs joined with
":", C{LISTEN_PID} this process's pid, and the program replaces this process
(exec keeps the pid, as systemd's own launcher does). C{--wrong-pid} sets
C{LISTEN_PID} to the parent's pid instead: sockets meant for another process.
"""

from __future__ import annotations

import fcntl
import os
import sys

#: systemd's first passed descriptor (SD_LISTEN_FDS_START).
LISTEN_FDS_START = 3


def main(argv: list[str]) -> None:
    """Move the descriptors into place, set the environment and exec the program."""
    wrong_pid = "--wrong-pid" in argv[:1]
    if wrong_pid:
        argv = argv[1:]
    split = argv.index("--")
    passed = [item.split("=", 1) for item in argv[:split]]
    command = argv[split + 1 :]
    # Out of the way first, so moving one to 3.. cannot overwrite another.
    high = [fcntl.fcntl(int(fd), fcntl.F_DUPFD, 100) for _name, fd in passed]
    for _name, fd in passed:
        os.close(int(fd))
    for i, moved in enumerate(high):
        os.dup2(moved, LISTEN_FDS_START + i)  # inheritable: it survives exec
        os.close(moved)
    os.environ["LISTEN_FDS"] = str(len(passed))
    os.environ["LISTEN_FDNAMES"] = ":".join(name for name, _fd in passed)
    os.environ["LISTEN_PID"] = str(os.getppid() if wrong_pid else os.getpid())
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
