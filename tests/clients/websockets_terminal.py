#!/usr/bin/env python3
"""Plays a short ev session with Python's websockets, a third-party
WebSocket client, on the mudstandards.org `terminal` subprotocol: the
game's text (ANSI, UTF-8) in BINARY frames, the player's lines sent back
the same way.

Usage: websockets_terminal.py HOST PORT. Exits 0 when every reply came as
expected, 1 with a message naming what was missing otherwise.
"""

import asyncio
import sys

from websockets.asyncio.client import connect

# Beside this script, so on its path when run.
from evclient import TIMEOUT, Failed  # noqa: E402

PROTOCOL = "terminal.mudstandards.org"


class Screen:
    """What the game showed, read frame by frame."""

    def __init__(self, ws):
        self.ws = ws
        self.text = ""

    async def expect(self, needle):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT
        while needle not in self.text:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise Failed(f"timed out waiting for {needle!r}")
            try:
                frame = await asyncio.wait_for(self.ws.recv(), remaining)
            except asyncio.TimeoutError:
                raise Failed(f"timed out waiting for {needle!r}")
            if not isinstance(frame, bytes):
                raise Failed(f"a TEXT frame on {PROTOCOL}: {frame!r}")
            self.text += frame.decode("utf-8")

    async def send(self, line):
        await self.ws.send(f"{line}\r\n".encode("utf-8"))


async def session(host, port):
    url = f"ws://{host}:{port}/ws"
    async with connect(url, subprotocols=[PROTOCOL], open_timeout=TIMEOUT) as ws:
        if ws.subprotocol != PROTOCOL:
            raise Failed(f"the server chose {ws.subprotocol!r}, not {PROTOCOL}")
        screen = Screen(ws)
        try:
            await screen.expect("Welcome to ")
            await screen.send("create Pyws secretpw")
            await screen.expect("Welcome, Pyws!")
            await screen.send("say hello from python")
            await screen.expect('You say, "hello from python"')
            await screen.send("quit")
            await screen.expect("Goodbye.")
        except Failed as e:
            tail = "\n    ".join(screen.text.splitlines()[-20:])
            raise Failed(f"{e}; text received:\n    {tail}") from None


def main():
    args = sys.argv[1:]
    if len(args) != 2:
        print("usage: websockets_terminal.py HOST PORT", file=sys.stderr)
        return 2
    try:
        asyncio.run(session(args[0], int(args[1])))
    except Failed as e:
        print(f"websockets session failed: {e}", file=sys.stderr)
        return 1
    print("websockets session ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
