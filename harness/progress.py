"""Progress on long work: a live status line on a terminal, sparse plain lines otherwise."""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console
from rich.status import Status


class Reporter:
    """Callable progress sink for long steps (kernel build, initramfs).

    On a terminal it shows a spinner with the latest message; when not a
    terminal (CI) it prints a plain line at most every ``interval`` seconds so
    logs show life without ten thousand lines.
    """

    def __init__(self, console: Console, interval: float = 30.0) -> None:
        self.console = console
        self.interval = interval
        self._status: Status | None = None
        self._last = 0.0

    def __enter__(self) -> Reporter:
        if self.console.is_terminal:
            self._status = self.console.status("working…")
            self._status.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._status is not None:
            self._status.stop()

    def __call__(self, message: str) -> None:
        if self._status is not None:
            self._status.update(message)
            return
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self.console.print(message, markup=False, highlight=False, soft_wrap=True)

    def step(self, message: str) -> None:
        """A milestone: always printed as its own line."""
        self.console.print(message, markup=False, highlight=False, soft_wrap=True)
