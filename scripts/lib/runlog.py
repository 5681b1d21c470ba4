"""Progress lines of the check scripts, each stamped with the seconds since
the script started: `[e2e   12.3s] ...`."""

import time

START = time.monotonic()


def elapsed():
    return time.monotonic() - START


def progress(name, width):
    """A log(msg) function printing `[<name> <seconds>s] msg` at once."""
    def log(msg):
        print(f"[{name} {elapsed():{width}.1f}s] {msg}", flush=True)

    return log
