"""Visma's rate limit, policy ``4-fixed-window``: a budget of calls per window for each (tenant, client).

Visma counts every authenticated call of a company and client combination, whichever
service it goes to, feedback posts included, in a fixed window that starts with the
first call; past the limit the call is refused with 429 and ``Retry-After`` until the
window resets. Every answer carries the window's state in ``X-RateLimit-*`` headers, so
a client can pace itself; :meth:`Budget.usage` is what the tests and the soak read to
compute the share of calls refused.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

POLICY = "4-fixed-window"
DEFAULT_CALLS_PER_WINDOW = 100_000  # far above what the demo, the tests and the soak make an hour
DEFAULT_WINDOW_SECONDS = 3600.0
Caller = tuple[str | None, str | None]  # (tenant, Visma Connect client id)


@dataclass
class _Window:
    started: float
    used: int = 0  # calls served in this window
    served: int = 0  # since the sandbox started (or was reset)
    refused: int = 0
    resets: int = 0  # windows that ended and were renewed by a later call


class Budget:
    """The windows of every (tenant, client), and the limit they share; thread-safe."""

    def __init__(
        self,
        lock: threading.RLock,
        calls_per_window: int = DEFAULT_CALLS_PER_WINDOW,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._lock = lock
        self._clock = clock
        self._windows: dict[Caller, _Window] = {}
        self.calls_per_window = DEFAULT_CALLS_PER_WINDOW
        self.window_seconds = DEFAULT_WINDOW_SECONDS
        self.configure(calls_per_window=calls_per_window, window_seconds=window_seconds)
        self._initial = (self.calls_per_window, self.window_seconds)

    def configure(self, *, calls_per_window: Any = None, window_seconds: Any = None) -> dict[str, Any]:
        """Change the limit or the window length (running windows keep their start); raises ValueError."""
        if calls_per_window is not None and (
            not isinstance(calls_per_window, int)
            or isinstance(calls_per_window, bool)
            or calls_per_window < 1
        ):
            raise ValueError("calls_per_window must be a positive integer")
        if window_seconds is not None and (
            not isinstance(window_seconds, int | float)
            or isinstance(window_seconds, bool)
            or window_seconds <= 0
        ):
            raise ValueError("window_seconds must be a number of seconds > 0")
        with self._lock:
            if calls_per_window is not None:
                self.calls_per_window = calls_per_window
            if window_seconds is not None:
                self.window_seconds = float(window_seconds)
        return self.settings()

    def settings(self) -> dict[str, Any]:
        return {
            "calls_per_window": self.calls_per_window,
            "window_seconds": self.window_seconds,
            "policy": POLICY,
        }

    def take(self, caller: Caller) -> tuple[bool, dict[str, str]]:
        """Use one call of the caller's window: (served?, the headers of the answer).

        A refused call carries ``Retry-After`` too, the seconds until the window resets.
        """
        with self._lock:
            window = self._current(caller)
            served = window.used < self.calls_per_window
            if served:
                window.used += 1
                window.served += 1
            else:
                window.refused += 1
            headers = self._headers(window)
        if not served:
            headers["Retry-After"] = headers["X-RateLimit-Reset"]
        return served, headers

    def headers(self, caller: Caller) -> dict[str, str]:
        """The headers of an answer that used no call (the token endpoint, a 401, a rule's answer)."""
        with self._lock:
            window = self._windows.get(caller) if caller[0] is not None else None
            if window is None or self._ended(window):
                window = _Window(self._clock())
            return self._headers(window)

    def usage(self) -> list[dict[str, Any]]:
        """Per (tenant, client): calls served and refused (429), window resets, the current window."""
        with self._lock:
            return [
                {
                    "tenant": tenant,
                    "client_id": client,
                    "calls": w.served + w.refused,
                    "served": w.served,
                    "refused": w.refused,
                    "resets": w.resets,
                    "remaining": self.calls_per_window
                    if self._ended(w)
                    else max(0, self.calls_per_window - w.used),
                    "reset_in": round(self._reset_in(w), 3),
                }
                for (tenant, client), w in sorted(
                    self._windows.items(), key=lambda i: (i[0][0] or "", i[0][1] or "")
                )
            ]

    def reset(self) -> None:
        """The limit and window the sandbox started with, and no windows."""
        with self._lock:
            self.calls_per_window, self.window_seconds = self._initial
            self._windows.clear()

    def _current(self, caller: Caller) -> _Window:
        window = self._windows.get(caller)
        if window is None:
            window = self._windows[caller] = _Window(self._clock())
        elif self._ended(window):
            window.started, window.used = self._clock(), 0
            window.resets += 1
        return window

    def _ended(self, window: _Window) -> bool:
        return self._clock() >= window.started + self.window_seconds

    def _reset_in(self, window: _Window) -> float:
        return max(0.0, window.started + self.window_seconds - self._clock())

    def _headers(self, window: _Window) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.calls_per_window),
            "X-RateLimit-Remaining": str(max(0, self.calls_per_window - window.used)),
            "X-RateLimit-Reset": str(math.ceil(self._reset_in(window))),
            "X-RateLimit-Policy": POLICY,
        }
