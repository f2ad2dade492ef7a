"""An aiohttp peer that runs in its own thread and event loop, so blocking tests can talk to it."""

from __future__ import annotations

import asyncio
import threading
from typing import Self

from aiohttp import web


class LoopThreadServer:
    """Subclasses implement ``_serve()``: build the app, set ``self._runner`` and start its sites."""

    label = "test peer"

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=self.label, daemon=True)
        self._runner: web.AppRunner | None = None

    async def _serve(self) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        self._thread.start()
        if not self._ready.wait(15):
            raise RuntimeError(f"{self.label} did not start in 15 s")
        if self._error is not None:
            raise RuntimeError(f"{self.label} failed to start: {self._error!r}")
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(15)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(15)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()
