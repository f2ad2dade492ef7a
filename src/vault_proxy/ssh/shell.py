"""The interactive shell over a WebSocket: a PTY on the host, bytes both ways, resize frames."""

from __future__ import annotations

import asyncio
import contextlib

import asyncssh
from aiohttp import WSMsgType, web

RESIZE_FRAME = 0x01  # binary frame: 0x01, cols (2 bytes, big-endian), rows (2 bytes)
MAX_SESSION_SECONDS = 4 * 3600
TERM_TYPE = "xterm-256color"


def parse_resize(data: bytes) -> tuple[int, int] | None:
    if len(data) == 5 and data[0] == RESIZE_FRAME:
        cols, rows = int.from_bytes(data[1:3], "big"), int.from_bytes(data[3:5], "big")
        if 0 < cols <= 1000 and 0 < rows <= 1000:
            return cols, rows
    return None


async def run_shell(ws: web.WebSocketResponse, conn: asyncssh.SSHClientConnection, cols: int, rows: int) -> int:
    """Bridge ``ws`` and a login shell until either side ends (or 4 h pass); returns bytes sent to the caller."""
    process = await conn.create_process(term_type=TERM_TYPE, term_size=(cols, rows), encoding=None)
    sent = 0

    async def host_to_caller() -> None:
        nonlocal sent
        while chunk := await process.stdout.read(64 * 1024):
            sent += len(chunk)
            await ws.send_bytes(chunk)

    async def caller_to_host() -> None:
        async for message in ws:
            if message.type == WSMsgType.BINARY:
                size = parse_resize(message.data)
                if size is not None:
                    process.change_terminal_size(*size)
                else:
                    process.stdin.write(message.data)
            elif message.type == WSMsgType.TEXT:
                process.stdin.write(message.data.encode())
            else:
                break

    tasks = [asyncio.ensure_future(host_to_caller()), asyncio.ensure_future(caller_to_host())]
    try:
        await asyncio.wait(tasks, timeout=MAX_SESSION_SECONDS, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        process.close()
        with contextlib.suppress(Exception):
            await asyncio.gather(*tasks, return_exceptions=True)
        await ws.close()
    return sent
