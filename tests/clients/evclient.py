"""What the telnetlib3 test clients share: a line expected with a deadline."""

import asyncio

TIMEOUT = 15.0


class Failed(Exception):
    pass


async def expect(reader, what, pred, seen):
    """Reads lines until one satisfies pred, with a deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise Failed(f"timed out waiting for {what}")
        try:
            line = await asyncio.wait_for(reader.readline(), remaining)
        except asyncio.TimeoutError:
            raise Failed(f"timed out waiting for {what}")
        if not line:
            raise Failed(f"connection closed while waiting for {what}")
        line = line.rstrip("\r\n")
        seen.append(line)
        if pred(line):
            return line
