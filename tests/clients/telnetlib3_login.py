#!/usr/bin/env python3
"""Plays a short ev session with telnetlib3, a third-party telnet client.

Usage: telnetlib3_login.py HOST PORT. Exits 0 when every reply came as
expected, 1 with a message naming what was missing otherwise. telnetlib3 asks
for MCCP2, and the session fails unless the output came compressed.
"""

import asyncio
import sys

import telnetlib3

# Beside this script, so on its path when run.
from evclient import TIMEOUT, Failed, expect, run, transcript  # noqa: E402,F401


async def session(host, port):
    seen = []
    reader, writer = await asyncio.wait_for(
        telnetlib3.open_connection(
            host,
            port,
            encoding="utf8",
            connect_minwait=0.05,
            connect_maxwait=1.0,
            compression=True,
        ),
        TIMEOUT,
    )
    with transcript(seen, writer):
        await expect(reader, "the welcome screen", lambda l: "Welcome to " in l, seen)
        name = "Thirdparty"
        writer.write(f"create {name} secretpw\r\n")
        await expect(reader, f"Welcome, {name}!", lambda l: f"Welcome, {name}!" in l, seen)
        writer.write("say hello\r\n")
        await expect(reader, 'You say, "hello"', lambda l: 'You say, "hello"' in l, seen)
        writer.write("ping x\r\n")
        await expect(reader, "pong x", lambda l: "pong x" in l, seen)
        if not getattr(writer, "mccp2_active", False):
            version = getattr(telnetlib3, "__version__", "?")
            raise Failed(
                f"the replies came, but not MCCP2-compressed (telnetlib3 {version}; "
                "the test is written against 5.0.1)"
            )
        writer.write("quit\r\n")
        await expect(reader, "Goodbye.", lambda l: "Goodbye." in l, seen)


if __name__ == "__main__":
    sys.exit(run(session, "telnetlib3_login.py HOST PORT"))
