"""Each tenant's share of Visma's hourly budget, spent before a call is made.

Visma counts calls per company and Visma Connect client in a fixed window (policy
``4-fixed-window``, about an hour) and refuses the rest with 429 until the window resets.
Every processor instance spends from one budget per (tenant, client), kept where all
instances see it (:mod:`visma_webhooks.adapters.budget_store`). This module is the
arithmetic, free of any storage:

* **What is allowed:** the window's limit less a reserve for the customer's other
  integrations on the same client (``VismaBudgetReservePercent``, default 10 %).
* **Paced, not rushed:** by a moment of the window, at most a burst (a quarter of what
  is allowed) plus the rest in proportion to the time gone. A mass update then spreads
  over the window instead of spending it in seconds, and a change an ERP user makes
  later in the hour still finds budget.
* **Background work** (the reconciler, a backfill) leaves a headroom for webhooks
  untouched: it never takes the last ``BACKGROUND_HEADROOM`` of what the pace allows.
* **Headers are the truth:** every answer's ``X-RateLimit-*`` values correct the limit,
  the end of the window and what was used (other integrations' calls included).

A call that finds no budget is not a failure: :class:`BudgetWait` says how long to wait.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Protocol

from visma_webhooks.domain.errors import ThrottledError
from visma_webhooks.domain.rate_limits import RateLimit

BURST_SHARE = 0.25  # of what a window allows, usable at once
BACKGROUND_HEADROOM = 0.25  # of what the pace allows, never taken by background work
ROUNDING = 1e-6  # of the pace's float arithmetic on epoch seconds
WINDOW_SLACK_SECONDS = 1.0  # a later window's end differs from the known one by more than this


class Priority(StrEnum):
    WEBHOOK = "webhook"  # a notification Visma sent: a user is waiting for it
    BACKGROUND = "background"  # reconciliation and backfills: only what webhooks leave


class BudgetWait(ThrottledError):
    """No budget for the call now: wait ``retry_after`` seconds (not a failure)."""

    def __init__(self, reason: str, retry_after: float):
        super().__init__(reason, retry_after, status=None)


@dataclass(frozen=True)
class BudgetSettings:
    reserve_percent: float = 10.0
    window_seconds: float = 3600.0
    assumed_limit: int = 500  # until Visma's headers say otherwise

    def allowed(self, limit: int) -> int:
        return max(1, math.floor(limit * (1 - self.reserve_percent / 100)))


@dataclass(frozen=True)
class Window:
    """One (tenant, client)'s current window as all instances know it."""

    ends_at: float  # epoch seconds
    limit: int
    spent: int = 0  # calls granted by this stack in the window
    used_seen: int = 0  # calls Visma counted (limit - remaining), last seen
    spent_at_seen: int = 0  # ``spent`` when that was seen: later grants count on top
    version: int = 0

    @property
    def used(self) -> int:
        return max(self.spent, self.used_seen + self.spent - self.spent_at_seen)


def current(window: Window | None, now: float, settings: BudgetSettings) -> Window:
    """The window in force at ``now``: the one given, or a new one once it has ended."""
    if window is None:
        return Window(ends_at=now + settings.window_seconds, limit=settings.assumed_limit)
    if now < window.ends_at:
        return window
    periods = math.floor((now - window.ends_at) / settings.window_seconds) + 1
    ends_at = window.ends_at + periods * settings.window_seconds
    return replace(window, ends_at=ends_at, spent=0, used_seen=0, spent_at_seen=0)


def observe(window: Window, seen: RateLimit, seen_at: float, settings: BudgetSettings) -> Window:
    """The window corrected by one answer's headers (seen at ``seen_at``, epoch seconds).

    A reset more than half a window past the known end means Visma is already in the next
    window: its counts start afresh; more than half a window before it, the answer was of
    the previous window and says nothing of this one. A smaller difference only aligns the
    known end. Visma's count replaces the estimate when it is higher; this stack's calls
    granted after it count on top of it.
    """
    limit = seen.limit if seen.limit is not None and seen.limit > 0 else window.limit
    ends_at = window.ends_at
    if seen.reset is not None:
        seen_end = seen_at + seen.reset
        if seen_end < ends_at - settings.window_seconds / 2:
            return window
        if seen_end > ends_at + settings.window_seconds / 2:
            window = replace(window, spent=0, used_seen=0, spent_at_seen=0)
        if abs(seen_end - ends_at) > WINDOW_SLACK_SECONDS:
            ends_at = seen_end
    window = replace(window, limit=limit, ends_at=ends_at)
    if seen.remaining is not None and limit - seen.remaining > window.used:
        window = replace(window, used_seen=limit - seen.remaining, spent_at_seen=window.spent)
    return window


def pace(window: Window, now: float, settings: BudgetSettings, priority: Priority) -> float:
    """Calls the window allows to have been used by ``now``."""
    allowed = settings.allowed(window.limit)
    burst = max(1.0, allowed * BURST_SHARE)
    gone = 1 - max(0.0, window.ends_at - now) / settings.window_seconds
    cap = min(float(allowed), burst + (allowed - burst) * max(0.0, gone))
    return cap * (1 - BACKGROUND_HEADROOM) if priority is Priority.BACKGROUND else cap


def grant(
    window: Window, now: float, units: int, settings: BudgetSettings, priority: Priority
) -> tuple[Window, float]:
    """``units`` more calls spent (wait 0), or the window unchanged and the seconds to wait."""
    if window.used + units <= pace(window, now, settings, priority) + ROUNDING:  # at wait_for's end too
        return replace(window, spent=window.spent + units), 0.0
    return window, wait_for(window, now, units, settings, priority)


def wait_for(window: Window, now: float, units: int, settings: BudgetSettings, priority: Priority) -> float:
    """Seconds until the pace allows ``units`` more calls (the window's end if it never will)."""
    allowed = settings.allowed(window.limit)
    share = (1 - BACKGROUND_HEADROOM) if priority is Priority.BACKGROUND else 1.0
    needed = (window.used + units) / share
    until_end = max(0.0, window.ends_at - now)
    if needed > allowed:
        return until_end + WINDOW_SLACK_SECONDS
    burst = max(1.0, allowed * BURST_SHARE)
    gone = (needed - burst) / (allowed - burst) if allowed > burst else 1.0
    starts_at = window.ends_at - settings.window_seconds
    return max(0.5, starts_at + gone * settings.window_seconds - now)


class Budget(Protocol):
    """A tenant's budget as the Visma client spends it."""

    def take(self, tenant_id: str, units: int, priority: Priority = Priority.WEBHOOK) -> None:
        """Spend ``units`` calls now, or raise :class:`BudgetWait`."""
        ...

    def observe(self, tenant_id: str, seen: RateLimit) -> None:
        """An answer's rate-limit headers, to correct the shared estimate with."""
        ...
