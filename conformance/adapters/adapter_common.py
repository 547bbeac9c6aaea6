"""Shared plumbing for the validator's adapters (see ../validator/README.md).

An adapter reads JSON commands from stdin, one per line, and writes JSON
events to stdout, one per line.  This module parses the common command line,
stamps and writes events (thread-safe), and iterates over commands.
"""
import argparse
import json
import sys
import threading
import time

_out = threading.Lock()


def parse_args(extra=None):
    p = argparse.ArgumentParser()
    p.add_argument("--host", required=True, help="address to connect to")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--endpoint", help="the name to verify / send as SNI, where the client allows it")
    p.add_argument("--ca", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--client-id", required=True)
    if extra:
        extra(p)
    return p.parse_args()


def emit(ev, **kw):
    """Writes one event: {"t": wall ms, "ev": ev, ...}."""
    d = {"t": round(time.time() * 1000.0, 3), "ev": ev}
    d.update(kw)
    line = json.dumps(d, default=str)
    with _out:
        try:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):
            pass


def commands():
    """Yields the commands read from stdin; ends at EOF or {"cmd":"quit"}."""
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            cmd = json.loads(line)
        except ValueError:
            emit("error", reason="bad command line: %r" % line[:200])
            continue
        if cmd.get("cmd") == "quit":
            return
        yield cmd
