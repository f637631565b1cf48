"""The arithmetic of a tenant's share of Visma's budget (domain.budgets), free of any storage.

Numbers used throughout: Visma's limit 500 an hour, 10 % reserved for the customer's other
integrations, so 450 allowed; a burst of a quarter of that (112.5) at once, the rest in
proportion to the time gone; background work never takes the last quarter of the pace.
"""

from __future__ import annotations

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from visma_webhooks.domain.budgets import (
    BACKGROUND_HEADROOM,
    BURST_SHARE,
    WINDOW_SLACK_SECONDS,
    BudgetSettings,
    BudgetWait,
    Priority,
    Window,
    current,
    grant,
    observe,
    pace,
    wait_for,
)
from visma_webhooks.domain.errors import ThrottledError
from visma_webhooks.domain.rate_limits import RateLimit

HOUR = 3600.0
SETTINGS = BudgetSettings(reserve_percent=10.0, window_seconds=HOUR, assumed_limit=500)
START = 1_000_000.0  # a window's start, epoch seconds
END = START + HOUR
WEBHOOK, BACKGROUND = Priority.WEBHOOK, Priority.BACKGROUND


def window(spent: int = 0, used_seen: int = 0, limit: int = 500, ends_at: float = END) -> Window:
    """Visma's count ``used_seen`` as seen when this stack had spent ``spent``."""
    return Window(ends_at=ends_at, limit=limit, spent=spent, used_seen=used_seen, spent_at_seen=spent)


# -- what is allowed -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reserve", "limit", "allowed"),
    [(10.0, 500, 450), (0.0, 500, 500), (25.0, 6, 4), (10.0, 6, 5), (99.0, 50, 1), (50.0, 1, 1)],
)
def test_the_reserve_percent_stays_unused_and_at_least_one_call_is_allowed(reserve, limit, allowed):
    assert BudgetSettings(reserve_percent=reserve).allowed(limit) == allowed


def test_defaults_reserve_ten_percent_of_an_assumed_500_an_hour():
    assert (BudgetSettings().reserve_percent, BudgetSettings().window_seconds) == (10.0, HOUR)
    assert BudgetSettings().assumed_limit == 500
    assert BudgetSettings().allowed(500) == 450


# -- the pace through the window -----------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (START, 450 * BURST_SHARE),  # the start: a burst only
        (START + HOUR / 2, 112.5 + 337.5 / 2),  # the middle: the burst plus half the rest
        (START + HOUR * 3 / 4, 112.5 + 337.5 * 3 / 4),
        (END, 450.0),  # the end: everything allowed, never the reserve
        (END + 100, 450.0),
    ],
)
def test_the_pace_is_a_burst_then_in_proportion_to_the_time_gone(now, expected):
    assert pace(window(), now, SETTINGS, WEBHOOK) == pytest.approx(expected)
    assert pace(window(), now, SETTINGS, BACKGROUND) == pytest.approx(expected * (1 - BACKGROUND_HEADROOM))


def test_the_reserve_lowers_the_pace_everywhere():
    none = BudgetSettings(reserve_percent=0.0)
    for now in (START, START + HOUR / 2, END):
        assert pace(window(), now, none, WEBHOOK) > pace(window(), now, SETTINGS, WEBHOOK)
    assert pace(window(), END, none, WEBHOOK) == 500


def test_a_tiny_limit_still_allows_a_burst_of_one():
    tiny = BudgetSettings(reserve_percent=0.0, window_seconds=3.0)
    assert pace(window(limit=2, ends_at=START + 3), START, tiny, WEBHOOK) == 1.0


# -- grant at the start, middle and end ------------------------------------------------------


def test_at_the_start_the_burst_is_granted_and_the_next_call_waits():
    w = window()
    for _ in range(112):
        w, wait = grant(w, START, 1, SETTINGS, WEBHOOK)
        assert wait == 0.0
    assert w.spent == 112

    refused, wait = grant(w, START, 1, SETTINGS, WEBHOOK)

    assert refused == w, "a refused grant must leave the window unchanged"
    # 113 calls are paced at 112.5 + 337.5 * gone: gone = 0.5 / 337.5 of the hour
    assert wait == pytest.approx(max(0.5, 0.5 / 337.5 * HOUR))


def test_in_the_middle_the_calls_of_the_first_half_are_granted_at_once():
    granted, wait = grant(window(spent=200), START + HOUR / 2, 81, SETTINGS, WEBHOOK)
    assert (granted.spent, wait) == (281, 0.0)

    refused, wait = grant(window(spent=200), START + HOUR / 2, 82, SETTINGS, WEBHOOK)
    assert refused.spent == 200
    assert wait == pytest.approx((282 - 112.5) / 337.5 * HOUR - HOUR / 2)


def test_at_the_end_everything_but_the_reserve_is_granted_then_it_waits_for_the_next_window():
    granted, wait = grant(window(spent=440), END, 10, SETTINGS, WEBHOOK)
    assert (granted.spent, wait) == (450, 0.0)
    _, wait = grant(window(spent=440), END - 10, 10, SETTINGS, WEBHOOK)
    assert 0 < wait <= 10, "just before the end, the last calls are paced, not refused for the window"

    _, wait = grant(granted, END - 10, 1, SETTINGS, WEBHOOK)

    # the 451st call is never allowed in this window: wait for its end, plus the slack
    assert wait == pytest.approx(10 + WINDOW_SLACK_SECONDS)


def test_calls_visma_counted_are_used_even_if_this_stack_did_not_spend_them():
    seen = window(spent=10, used_seen=112)
    _, wait = grant(seen, START, 1, SETTINGS, WEBHOOK)
    assert wait > 0
    assert seen.used == 112
    assert window(spent=30, used_seen=5).used == 30


# -- background headroom ---------------------------------------------------------------------


def test_background_work_leaves_a_headroom_that_webhooks_can_still_take():
    middle = START + HOUR / 2
    cap = pace(window(), middle, SETTINGS, WEBHOOK)  # 281.25
    background_cap = cap * (1 - BACKGROUND_HEADROOM)  # 210.9
    w = window(spent=int(background_cap))

    refused, wait = grant(w, middle, 1, SETTINGS, BACKGROUND)
    assert refused == w
    assert wait > 0
    granted, wait = grant(w, middle, 1, SETTINGS, WEBHOOK)
    assert wait == 0.0
    assert granted.spent == w.spent + 1

    # background waits until the pace grows by a third: (used + 1) / 0.75 must be paced
    needed = (w.used + 1) / (1 - BACKGROUND_HEADROOM)
    assert wait_for(w, middle, 1, SETTINGS, BACKGROUND) == pytest.approx(
        (needed - 112.5) / 337.5 * HOUR - HOUR / 2
    )


def test_background_work_never_takes_the_last_quarter_of_a_window():
    w = window(spent=int(450 * (1 - BACKGROUND_HEADROOM)))  # 337
    _, wait = grant(w, END - 1, 1, SETTINGS, BACKGROUND)
    assert wait == pytest.approx(1 + WINDOW_SLACK_SECONDS)
    _, wait = grant(w, END - 1, 100, SETTINGS, WEBHOOK)
    assert wait == 0.0


# -- a new window ----------------------------------------------------------------------------


def test_no_window_yet_starts_one_at_the_assumed_limit():
    w = current(None, START, SETTINGS)
    assert (w.ends_at, w.limit, w.spent, w.used_seen) == (START + HOUR, 500, 0, 0)


def test_a_running_window_is_kept():
    w = window(spent=7, used_seen=9)
    assert current(w, END - 0.001, SETTINGS) is w


@pytest.mark.parametrize(
    ("later", "ends_at"), [(0.0, END + HOUR), (10.0, END + HOUR), (2.5 * HOUR, END + 3 * HOUR)]
)
def test_an_ended_window_is_followed_by_a_fresh_one_on_the_same_grid(later, ends_at):
    w = Window(ends_at=END, limit=600, spent=300, used_seen=450, version=4)

    fresh = current(w, END + later, SETTINGS)

    assert (fresh.ends_at, fresh.spent, fresh.used_seen) == (ends_at, 0, 0)
    assert (fresh.limit, fresh.version) == (600, 4), "the learnt limit and the version carry over"
    assert grant(fresh, END + later, 1, SETTINGS, WEBHOOK)[1] == 0.0


# -- observe: the headers are the truth --------------------------------------------------------


def test_observe_takes_the_limit_visma_states():
    w = observe(window(), RateLimit(limit=1000, remaining=None, reset=None), START, SETTINGS)
    assert w.limit == 1000
    assert pace(w, END, SETTINGS, WEBHOOK) == 900


@pytest.mark.parametrize("limit", [None, 0, -3])
def test_observe_keeps_the_known_limit_without_a_usable_one(limit):
    assert observe(window(limit=321), RateLimit(limit, None, None), START, SETTINGS).limit == 321


def test_observe_corrects_used_from_remaining():
    # another integration on the same client spent 300 calls: Visma says 190 remain of 500
    w = observe(window(spent=10), RateLimit(limit=500, remaining=190, reset=None), START + 60, SETTINGS)

    assert (w.spent, w.used_seen, w.used) == (10, 310, 310)
    _, wait = grant(w, START + 60, 1, SETTINGS, WEBHOOK)
    assert wait > 0


def test_observe_never_lowers_what_was_used():
    w = observe(window(spent=50, used_seen=40), RateLimit(500, remaining=480, reset=None), START, SETTINGS)
    assert (w.used_seen, w.used) == (40, 50)


def test_observe_aligns_the_end_with_vismas_reset():
    # Visma's window started 10 minutes before ours: it ends 600 s earlier
    seen_at = START + 100
    w = observe(window(spent=5), RateLimit(500, 495, reset=HOUR - 700), seen_at, SETTINGS)

    assert w.ends_at == pytest.approx(seen_at + HOUR - 700)
    assert (w.spent, w.used) == (5, 5), "aligning the end keeps the counts"


def test_observe_ignores_a_reset_within_the_slack():
    seen_at = START + 100
    w = observe(window(), RateLimit(500, 500, reset=HOUR - 100 + 0.9), seen_at, SETTINGS)
    assert w.ends_at == END


def test_observe_recognises_that_visma_is_already_in_its_next_window():
    # ours still runs for 10 s, but Visma reset already: its window ends in an hour less 5 s
    seen_at = END - 10
    stale = window(spent=440, used_seen=450)
    _, wait = grant(stale, seen_at, 1, SETTINGS, WEBHOOK)
    assert wait > 0

    w = observe(stale, RateLimit(500, remaining=497, reset=HOUR - 5), seen_at, SETTINGS)

    assert w.ends_at == pytest.approx(seen_at + HOUR - 5)
    assert (w.spent, w.used_seen) == (0, 3), "the counts start afresh, then Remaining corrects them"
    assert grant(w, seen_at, 1, SETTINGS, WEBHOOK)[1] == 0.0


def test_a_wait_is_a_throttle_not_a_failure():
    wait = BudgetWait("spent for now", 12.5)
    assert isinstance(wait, ThrottledError)
    assert wait.retry_after == 12.5


# -- properties --------------------------------------------------------------------------------

limits = st.integers(min_value=1, max_value=5000)
reserves = st.sampled_from([0.0, 5.0, 10.0, 25.0, 50.0])
windows_seconds = st.sampled_from([2.0, 3.0, 60.0, HOUR])
priorities = st.sampled_from(list(Priority))


@st.composite
def situations(draw):
    settings = BudgetSettings(reserve_percent=draw(reserves), window_seconds=draw(windows_seconds))
    limit = draw(limits)
    allowed = settings.allowed(limit)
    spent = draw(st.integers(min_value=0, max_value=allowed + 5))
    used_seen = draw(st.integers(min_value=0, max_value=limit))
    ends_at = START + settings.window_seconds
    now = START + draw(st.floats(min_value=0.0, max_value=1.0)) * settings.window_seconds
    priority = draw(priorities)
    # at most what a fresh window grants at once (background: its share of the burst)
    share = (1 - BACKGROUND_HEADROOM) if priority is Priority.BACKGROUND else 1.0
    most = int(max(1.0, allowed * BURST_SHARE) * share)
    assume(most >= 1)
    units = draw(st.integers(min_value=1, max_value=most))
    w = Window(ends_at=ends_at, limit=limit, spent=spent, used_seen=used_seen)
    return settings, w, now, units, priority


@given(situations(), st.lists(st.integers(min_value=1, max_value=20), max_size=60))
def test_grants_never_exceed_what_the_window_allows(situation, asks):
    settings, w, now, _, priority = situation
    w = Window(ends_at=w.ends_at, limit=w.limit)
    allowed = settings.allowed(w.limit)
    step = settings.window_seconds / max(1, len(asks))
    for i, units in enumerate(asks):
        at = now + i * step
        before = w
        w, wait = grant(w, min(at, w.ends_at), units, settings, priority)
        if wait:
            assert w == before
        else:
            assert w.spent == before.spent + units
        assert w.used <= max(before.used, pace(w, min(at, w.ends_at), settings, priority))
        assert w.used <= allowed
        if priority is Priority.BACKGROUND:
            assert w.used <= allowed * (1 - BACKGROUND_HEADROOM) or w.used == before.used


@given(situations())
def test_a_grant_waits_exactly_when_the_pace_is_exceeded(situation):
    settings, w, now, units, priority = situation
    granted, wait = grant(w, now, units, settings, priority)
    if w.used + units <= pace(w, now, settings, priority):
        assert (granted.spent, wait) == (w.spent + units, 0.0)
    else:
        assert granted == w
        assert wait == wait_for(w, now, units, settings, priority) > 0


def _grant_after(situation, margin: float) -> tuple[float, Window, float]:
    settings, w, now, units, priority = situation
    wait = wait_for(w, now, units, settings, priority)
    later = current(w, now + wait + margin, settings)  # a new window if the wait outlasted this one
    return wait, later, grant(later, now + wait + margin, units, settings, priority)[1]


@given(situations())
def test_a_moment_after_the_wait_the_grant_succeeds(situation):
    settings, w, now, units, priority = situation
    assume(w.used + units > pace(w, now, settings, priority))  # it has to wait

    wait, later, again = _grant_after(situation, margin=1e-3)

    assert wait > 0
    assert again == 0.0, f"waited {wait} s and still refused: {later}"


# Found by hypothesis: the wait ends exactly where the pace reaches the calls needed, and
# the pace computed at ``now + wait`` rounds to just below it (4.9999999 < 5), so the grant
# is refused once more and the notification waits another 0.5 s (another re-enqueue).
@example(
    (
        BudgetSettings(reserve_percent=0.0, window_seconds=2.0),
        window(used_seen=3, limit=10, ends_at=START + 2),
        START,
        2,
        WEBHOOK,
    )
)
@given(situations())
def test_after_waiting_for_exactly_the_wait_the_grant_succeeds(situation):
    settings, w, now, units, priority = situation
    assume(w.used + units > pace(w, now, settings, priority))  # it has to wait

    wait, later, again = _grant_after(situation, margin=0.0)

    assert wait > 0
    assert again == 0.0, f"waited {wait} s and still refused: {later}"


@given(situations())
def test_a_wait_never_ends_after_the_next_window_has_begun(situation):
    settings, w, now, units, priority = situation
    wait = wait_for(w, now, units, settings, priority)
    assert 0 < wait <= max(0.0, w.ends_at - now) + WINDOW_SLACK_SECONDS


@given(situations(), st.integers(min_value=0, max_value=5000), st.floats(min_value=0, max_value=HOUR))
def test_observe_never_forgets_what_visma_counted(situation, remaining, reset):
    settings, w, now, _, _ = situation
    seen = observe(w, RateLimit(limit=w.limit, remaining=min(remaining, w.limit), reset=reset), now, settings)
    if now + reset < w.ends_at - settings.window_seconds / 2:  # an answer of the previous window
        assert seen == w
        return
    assert seen.used >= w.limit - min(remaining, w.limit)
    new_window = now + reset > w.ends_at + settings.window_seconds / 2
    if not new_window:
        assert seen.used >= w.used
