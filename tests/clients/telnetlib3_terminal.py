#!/usr/bin/env python3
"""Checks with telnetlib3 that what a client tells of its terminal reaches
the game, and is still there after a reload.

Usage: telnetlib3_terminal.py HOST PORT EVCTL GAME_DIR. telnetlib3 answers
the portal's DO NAWS with a 120x40 window and its DO TTYPE with
"xterm-256color", and agrees on UTF-8 over CHARSET. The game's `client`
command must show all three, before and after `EVCTL -g GAME_DIR reload`.
Exits 0 on success, 1 naming what was missing.
"""

import asyncio
import sys

import telnetlib3

# Beside this script, so on its path when run.
from evclient import TIMEOUT, Failed, expect, run, transcript  # noqa: E402,F401


def check_client(line):
    low = line.lower()
    for part in ("xterm-256color", "120x40", "utf-8"):
        if part not in low:
            raise Failed(f"`client` did not show {part!r}: {line!r}")


async def reload(evctl, game_dir):
    proc = await asyncio.create_subprocess_exec(
        evctl, "-g", game_dir, "reload",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 90)
    if proc.returncode != 0:
        raise Failed(f"evctl reload failed: {out.decode(errors='replace')}")


async def session(host, port, evctl, game_dir):
    seen = []
    reader, writer = await asyncio.wait_for(
        telnetlib3.open_connection(
            host,
            port,
            encoding="utf8",
            term="xterm-256color",
            cols=120,
            rows=40,
            connect_minwait=0.05,
            connect_maxwait=1.0,
        ),
        TIMEOUT,
    )
    with transcript(seen, writer):
        await expect(reader, "the welcome screen", lambda l: "Welcome to " in l, seen)
        writer.write("create Terminal secretpw\r\n")
        await expect(reader, "Welcome, Terminal!", lambda l: "Welcome, Terminal!" in l, seen)
        writer.write("client\r\n")
        check_client(await expect(reader, "Your client:", lambda l: "Your client:" in l, seen))
        await reload(evctl, game_dir)
        writer.write("client\r\n")
        check_client(await expect(reader, "Your client: after the reload",
                                  lambda l: "Your client:" in l, seen))
        writer.write("quit\r\n")
        await expect(reader, "Goodbye.", lambda l: "Goodbye." in l, seen)


if __name__ == "__main__":
    sys.exit(run(session, "telnetlib3_terminal.py HOST PORT EVCTL GAME_DIR"))
