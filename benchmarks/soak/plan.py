"""The soak's settings and its workload: which notifications, of which kind, for which tenant."""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# ``make soak`` writes its figures under the git-ignored build/; ``--record`` updates the committed file.
RESULTS = ROOT / "build" / "soak" / "soak-results.json"
RECORDED_RESULTS = ROOT / "benchmarks" / "soak-results.json"
# entity path, legacy event, dispatcher display name, id format
ENTITIES = (
    ("customer", "customer_changed", "Customer Changed", "{}"),
    ("supplier", "supplier_changed", "Supplier Changed", "{}"),
    ("inventory", "inventoryitem_changed", "Inventory Item Changed", "ITEM-{}"),
    ("salesorder", "salesorder_changed", "Sales Order Changed", "SO/{}"),
    ("customerinvoice", "customerinvoice_changed", "AR Invoice Changed", "{}"),
)


@dataclass
class SoakConfig:
    notifications: int = 2000
    kills: int = 6
    seed: int = 20261124
    fault_rate: float = 0.20  # of all Visma calls: 5xx, 429 and timeouts in these shares
    fault_shares: tuple[float, float, float] = (0.5, 0.3, 0.2)
    refused_rate: float = 0.01  # resources Visma refuses for good (403)
    deleted_rate: float = 0.01  # resources that are gone (404): deletions
    outage_rate: float = 0.005  # resources answering 503 until Visma is fixed
    dispatcher_share: float = 0.1  # notifications sent as single dispatcher deliveries
    concurrent_share: float = 0.35  # delivery pairs sent at the same instant
    max_group: int = 20
    tenants: int = 8
    forged: int | None = None  # default: 5 % of the valid requests, at least 11
    malformed: int | None = None  # default: the same
    max_receive_count: int = 6
    processor_timeout: int = 6
    visibility_timeout: int = 8
    retry_base_seconds: float = 0.25
    processes: int = 2
    pollers: int = 4
    senders: int = 4
    # Sending waits while the queue holds this many messages: moto's SQS scans every message
    # of the queue on each receive and delete, so a backlog of thousands only measures moto.
    max_backlog: int = 250
    timeout: float = 1800.0  # the whole run: a guard against a hang (it takes 4 to 14 minutes)
    # The mass-update phase (after the replay; 0: none): one tenant's notifications all at
    # once, one per record, against a Visma budget that needs several windows, while
    # ``other_tenants`` each send ``other_rate`` notifications a second.
    mass_update: int = 300
    calls_per_window: int = 150  # Visma's budget per (tenant, client) in that phase
    window_seconds: float = 15.0  # Visma's window, and the processor's VISMA_BUDGET_WINDOW_SECONDS
    budget_reserve_percent: float = 10.0  # the processor's VISMA_BUDGET_RESERVE_PERCENT
    other_tenants: int = 2
    other_rate: float = 2.0  # notifications a second, per other tenant
    other_resources: int = 4  # records per other tenant, each changed before each notification
    workdir: Path | None = None
    keep: bool = False  # keep the work directory (logs, effects)
    results: Path | None = RESULTS


CALLS_PER_NOTIFICATION = 2  # the GET of the resource and the feedback POST


def allowed_per_window(config: SoakConfig) -> int:
    """Calls the processor lets a tenant make per window: the limit less the reserve."""
    return max(1, math.floor(config.calls_per_window * (1 - config.budget_reserve_percent / 100)))


def windows_at_floor(config: SoakConfig) -> int:
    """Windows the mass update needs at the very least: its calls over what a window allows."""
    return math.ceil(CALLS_PER_NOTIFICATION * config.mass_update / allowed_per_window(config))


def batch_seconds(config: SoakConfig) -> float:
    """The longest a batch may take: the processor's timeout."""
    return float(config.processor_timeout)


def other_latency_bound(config: SoakConfig) -> float:
    """Worst latency allowed to another tenant's notification during the burst: three batch times.

    A batch in flight when it arrives, its own, and one more for a wait on its record's
    lease (the same record changes again and again); below the burst, which lasts at
    least ``windows_at_floor - 1`` windows (:func:`check_mass_plan` makes sure of that).
    A tenant starved by the burst would wait about as long as the burst.
    """
    return 3 * batch_seconds(config)


def check_mass_plan(config: SoakConfig) -> list[str]:
    """Why the mass-update phase would not test what it claims (empty: it would)."""
    if config.mass_update <= 0:
        return []
    found = []
    if windows_at_floor(config) < 3:
        found.append(
            f"{config.mass_update} notifications need only {windows_at_floor(config)} windows of "
            f"{allowed_per_window(config)} calls: lower calls_per_window"
        )
    burst = (windows_at_floor(config) - 1) * config.window_seconds
    if burst <= other_latency_bound(config):
        found.append(
            f"the burst lasts at least {burst:.0f} s, not more than the latency bound "
            f"{other_latency_bound(config):.0f} s: longer windows"
        )
    per_window = CALLS_PER_NOTIFICATION * config.other_rate * config.window_seconds
    if per_window > allowed_per_window(config) / 2:
        found.append(
            f"another tenant's {per_window:.0f} calls a window come close to its budget: lower other_rate"
        )
    return found


@dataclass
class Planned:
    nid: str
    tenant: str
    path: str  # /v1/...
    kind: str  # ok | refused | deleted | outage
    fmt: str  # legacy | dispatcher
    entity: int


def new_uuid(rng: random.Random) -> str:
    """A version 4 UUID drawn from ``rng``, so that a seed repeats the run's ids."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _kinds(config: SoakConfig, rng: random.Random) -> list[str]:
    """ok, refused (403 for good), deleted (404) or outage (503 until the fix) for each notification."""
    n = config.notifications
    counts = {
        kind: max(1, round(n * rate))
        for kind, rate in (
            ("refused", config.refused_rate),
            ("deleted", config.deleted_rate),
            ("outage", config.outage_rate),
        )
    }
    special = iter(rng.sample(range(n), sum(counts.values())))
    kinds = ["ok"] * n
    for kind, count in counts.items():
        for _ in range(count):
            kinds[next(special)] = kind
    return kinds


def _resource_id(kind: str, i: int, id_format: str, n: int, rng: random.Random) -> str:
    if kind == "deleted":
        return f"missing-{i}"  # the sandbox never finds an id starting with "missing"
    if kind in ("refused", "outage"):
        return f"{kind}-{i}"
    # A pool smaller than the run, so that one resource is named by several notifications.
    return id_format.format(rng.randint(10000, 10000 + max(10, n // 3)))


def plan(config: SoakConfig, rng: random.Random) -> list[Planned]:
    """The run's notifications, each with its tenant, resource, kind and format."""
    n = config.notifications
    kinds = _kinds(config, rng)
    legacy_tenants = [str(1262489 + i) for i in range(config.tenants)]
    dispatcher_tenants = [new_uuid(rng) for _ in range(max(1, config.tenants // 2))]
    planned = []
    for i in range(n):
        fmt = "dispatcher" if rng.random() < config.dispatcher_share else "legacy"
        entity = rng.randrange(len(ENTITIES))
        name, _, _, id_format = ENTITIES[entity]
        rid = _resource_id(kinds[i], i, id_format, n, rng)
        tenant = rng.choice(dispatcher_tenants if fmt == "dispatcher" else legacy_tenants)
        planned.append(Planned(new_uuid(rng), tenant, f"/v1/{name}/{rid}", kinds[i], fmt, entity))
    return planned
