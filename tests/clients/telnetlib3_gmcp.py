#!/usr/bin/env python3
"""Checks with telnetlib3 that GMCP works both ways through the portal.

Usage: telnetlib3_gmcp.py HOST PORT. telnetlib3 takes the portal's offer of
GMCP (WILL GMCP, answered DO) and then says Core.Hello and
Core.Supports.Set by itself. The game (a test's fake server) sends the GMCP
message Char.Vitals {"hp": 42, "maxhp": 50} and then the line "vitals
sent"; this client checks telnetlib3 got the message, sends
Char.Skills.Get {"group": "combat"} of its own, and waits for the line
"bye". Exits 0 on success, 1 naming what failed.
"""

import asyncio
import sys

try:
    import telnetlib3
except ImportError:
    print("the Python package telnetlib3 is missing: run "
          "`python3 -m pip install telnetlib3` (.ci/run does)", file=sys.stderr)
    sys.exit(1)

# Beside this script, so on its path when run.
from evclient import TIMEOUT, Failed, expect, run, transcript  # noqa: E402


async def session(host, port):
    seen = []
    reader, writer = await asyncio.wait_for(
        telnetlib3.open_connection(
            host,
            port,
            encoding="utf8",
            connect_minwait=0.05,
            connect_maxwait=1.0,
        ),
        TIMEOUT,
    )
    with transcript(seen, writer):
        await expect(reader, "vitals sent", lambda l: "vitals sent" in l, seen)
        vitals = writer.ctx.gmcp_data.get("Char.Vitals")
        if vitals != {"hp": 42, "maxhp": 50}:
            raise Failed(f"GMCP Char.Vitals not received as sent: {writer.ctx.gmcp_data!r}")
        writer.send_gmcp("Char.Skills.Get", {"group": "combat"})
        await expect(reader, "bye", lambda l: "bye" in l, seen)


if __name__ == "__main__":
    sys.exit(run(session, "telnetlib3_gmcp.py HOST PORT"))
