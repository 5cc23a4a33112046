"""What the telnetlib3 test clients share: a line expected with a deadline,
the last lines received named on a failure, and the running of a session
from the command line."""

import asyncio
import contextlib
import sys

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


@contextlib.contextmanager
def transcript(seen, writer):
    """A failure inside names the last lines received; the writer is closed
    either way."""
    try:
        yield
    except Failed as e:
        tail = "\n    ".join(seen[-20:])
        raise Failed(f"{e}; lines received:\n    {tail}") from None
    finally:
        writer.close()


def run(session, usage):
    """Runs `session(host, port, *rest)` from `HOST PORT *rest` on the
    command line (as many as `usage` names); returns the exit status: 0
    when it succeeded, 1 when it failed (saying why), 2 for a bad usage."""
    args = sys.argv[1:]
    if len(args) != len(usage.split()) - 1:
        print(f"usage: {usage}", file=sys.stderr)
        return 2
    host, port, *rest = args
    try:
        asyncio.run(session(host, int(port), *rest))
    except Failed as e:
        print(f"telnetlib3 session failed: {e}", file=sys.stderr)
        return 1
    print("telnetlib3 session ok")
    return 0
