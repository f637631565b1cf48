"""The soak's requests to the webhook endpoint, and the senders that post them.

Every valid request goes twice (as the dispatcher redelivers), interleaved with forged
requests that must get 401 and malformed ones that must get 400 or 413.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from benchmarks.soak.plan import ENTITIES, Planned, SoakConfig, new_uuid, plan
from visma_webhooks.domain.signature import sign

SECRET = "soak-webhook-secret"
LEGACY_HOST = "https://integration.visma.net/API/controller/api"
DISPATCHER_HOST = "https://api.finance.visma.net"
TICKS = 638_680_512_000_000_000  # .NET ticks of the legacy items' timeStamp


@dataclass
class Request:
    label: str  # valid | forged:<how> | malformed:<how>
    raw: bytes
    headers: dict[str, str]
    expect: tuple[int, ...]
    nids: list[str] = field(default_factory=list)


Job = tuple[float, list[Request]]  # (position in the stream, the request once or as a simultaneous pair)


@dataclass
class Workload:
    """The planned notifications and every request the soak sends, in sending order."""

    planned: list[Planned]
    valid: list[Request]
    forged: list[Request]
    malformed: list[Request]
    jobs: list[Job]

    @property
    def by_nid(self) -> dict[str, Planned]:
        return {p.nid: p for p in self.planned}

    @property
    def expected_effects(self) -> int:
        """Handler runs before the fix: one per notification whose resource answers or is gone."""
        return sum(p.kind in ("ok", "deleted") for p in self.planned)


def workload(config: SoakConfig, rng: random.Random) -> Workload:
    planned = plan(config, rng)
    valid = valid_requests(planned, config, rng)
    n_extra = max(11, round(len(valid) * 0.05))
    forged = forged_requests(config.forged if config.forged is not None else n_extra, rng)
    malformed = malformed_requests(config.malformed if config.malformed is not None else n_extra, rng)
    jobs = schedule(valid, forged + malformed, config, rng)
    return Workload(planned, valid, forged, malformed, jobs)


def _legacy_item(p: Planned, ticks: int) -> dict[str, Any]:
    _, event, _, _ = ENTITIES[p.entity]
    return {
        "notificationId": p.nid,
        "contextId": p.tenant,
        "event": event,
        "resourceUri": LEGACY_HOST + p.path,
        "timeStamp": ticks,
    }


def _signed(raw: bytes, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {"content-type": "application/json", "x-vwd-signature-v1": sign(raw, SECRET), **(extra or {})}


def _compact(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def _legacy_requests(legacy: list[Planned], config: SoakConfig, rng: random.Random) -> list[Request]:
    """The legacy notifications in arrays of 1 to ``max_group`` items, as Visma groups them under load."""
    out: list[Request] = []
    i = 0
    while i < len(legacy):
        size = min(rng.choice((1, 1, 2, 3, 5, 8, 10, 12, 15, config.max_group)), len(legacy) - i)
        group = legacy[i : i + size]
        i += size
        raw = _compact([_legacy_item(p, TICKS + k) for k, p in enumerate(group)])
        out.append(Request("valid", raw, _signed(raw), (202,), [p.nid for p in group]))
    return out


def _dispatcher_request(p: Planned, rng: random.Random) -> Request:
    _, _, display, _ = ENTITIES[p.entity]
    raw = _compact(
        {
            "Event": display,
            "EntityId": p.path.split("/", 3)[3],
            "ResourceUri": DISPATCHER_HOST + p.path,
        }
    )
    now_ms = str(int(time.time() * 1000))
    headers = {
        "x-vwd-tenant-id": p.tenant,
        "x-vwd-notification-id": p.nid,
        "x-vwd-event-id": new_uuid(rng),
        "x-vwd-subscription-id": "soak-subscription",
        "x-vwd-notification-timestamp": now_ms,
        "x-vwd-webhook-timestamp": now_ms,
    }
    return Request("valid", raw, _signed(raw, headers), (202,), [p.nid])


def valid_requests(planned: list[Planned], config: SoakConfig, rng: random.Random) -> list[Request]:
    out = _legacy_requests([p for p in planned if p.fmt == "legacy"], config, rng)
    out += [_dispatcher_request(p, rng) for p in planned if p.fmt == "dispatcher"]
    rng.shuffle(out)
    return out


def _forged_signature(how: str, raw: bytes) -> dict[str, str]:
    """The signature headers of one kind of forgery (none for ``unsigned``)."""
    good = sign(raw, SECRET)
    return {
        "unsigned": {},
        "another key": {"x-vwd-signature-v1": sign(raw, "not-the-secret")},
        "another body": {"x-vwd-signature-v1": sign(raw + b" ", SECRET)},
        "not base64": {"x-vwd-signature-v1": "%%%not-base64%%%"},
        "old header": {"x-vwd-signature": good},
        "truncated": {"x-vwd-signature-v1": good[:20]},
        "empty": {"x-vwd-signature-v1": ""},
    }[how]


def forged_requests(count: int, rng: random.Random) -> list[Request]:
    """Bodies that look genuine (fresh ids) with a signature that must not verify: 401."""
    out = []
    hows = ("unsigned", "another key", "another body", "not base64", "old header", "truncated", "empty")
    for k in range(count):
        how = hows[k % len(hows)]
        nids = [new_uuid(rng) for _ in range(rng.randint(1, 3))]
        items = [
            {
                "notificationId": nid,
                "contextId": "1262489",
                "event": "customer_changed",
                "resourceUri": f"{LEGACY_HOST}/v1/customer/forged-{nid[:8]}",
                "timeStamp": TICKS,
            }
            for nid in nids
        ]
        raw = _compact(items)
        headers = {"content-type": "application/json", **_forged_signature(how, raw)}
        out.append(Request(f"forged:{how}", raw, headers, (401,), nids))
    return out


def malformed_requests(count: int, rng: random.Random) -> list[Request]:
    """Signed, but not a delivery: 400 (413 for the oversize one)."""
    out = []
    for k in range(count):
        nid = new_uuid(rng)
        item = _compact(
            [
                {
                    "notificationId": nid,
                    "contextId": "1262489",
                    "event": "customer_changed",
                    "resourceUri": f"{LEGACY_HOST}/v1/customer/malformed-{nid[:8]}",
                    "timeStamp": TICKS,
                }
            ]
        )
        variants: dict[str, tuple[bytes, tuple[int, ...]]] = {
            "truncated JSON": (item[: len(item) // 2], (400,)),
            "not JSON": (b"notificationId=" + nid.encode(), (400,)),
            "empty body": (b"", (400,)),
            "empty array": (b"[]", (400,)),
            "a string": (json.dumps(nid).encode(), (400,)),
            "numbers": (b"[1,2,3]", (400,)),
            "null": (b"null", (400,)),
            "UTF-8 BOM": (b"\xef\xbb\xbf" + item, (400,)),
            "invalid UTF-8": (item.replace(b"customer_changed", b"customer\xff_changed"), (400,)),
            "nested 200 deep": (b"[" * 200 + b"]" * 200, (400,)),
            "oversize": (b"[" + item[1:-1] + b"," + b" " * 600_000 + item[1:-1] + b"]", (413,)),
        }
        how = list(variants)[k % len(variants)]
        raw, expect = variants[how]
        out.append(Request(f"malformed:{how}", raw, _signed(raw), expect, [nid]))
    return out


def schedule(valid: list[Request], extra: list[Request], config: SoakConfig, rng: random.Random) -> list[Job]:
    """Jobs in sending order: every valid request twice (a pair at once, or the copy later)."""
    jobs: list[Job] = []
    for i, request in enumerate(valid):
        if rng.random() < config.concurrent_share:
            jobs.append((i, [request, request]))
        else:
            jobs.append((i, [request]))
            jobs.append((i + rng.uniform(1, 60), [request]))
    for request in extra:
        jobs.append((rng.uniform(0, len(valid)), [request]))
    jobs.sort(key=lambda job: job[0])
    return jobs


@dataclass
class Sent:
    request: Request
    status: int | None
    body: Any
    attempts: int


class Sender:
    """Posts the jobs with a few threads; a pair is posted from two threads at the same instant.

    A valid request that is not answered 2xx is sent again (as the dispatcher retries).
    """

    def __init__(
        self,
        url: str,
        jobs: list[Job],
        threads: int,
        backlog: Callable[[], int] | None = None,
        max_backlog: int = 0,
    ):
        self.url = url
        self.jobs = jobs
        self.threads = threads
        self.backlog = backlog
        self.max_backlog = max_backlog
        self.paused = 0.0  # seconds the senders waited for the queue
        self._depth = (0.0, 0)  # (when read, depth)
        self.results: list[Sent] = []
        self.done = threading.Event()
        self._lock = threading.Lock()
        self._next = 0
        self._local = threading.local()

    def start(self) -> Sender:
        workers = [threading.Thread(target=self._work, daemon=True) for _ in range(self.threads)]
        for w in workers:
            w.start()
        threading.Thread(target=self._finish, args=(workers,), daemon=True).start()
        return self

    def _finish(self, workers: list[threading.Thread]) -> None:
        for w in workers:
            w.join()
        self.done.set()

    def _read_depth(self) -> int:
        """The queue's depth, read at most every 0.25 s (a read that fails counts as room)."""
        assert self.backlog is not None
        with self._lock:
            read_at, depth = self._depth
            if time.monotonic() - read_at > 0.25:
                try:
                    depth = self.backlog()
                except Exception:
                    depth = 0
                self._depth = (time.monotonic(), depth)
        return depth

    def _wait_for_room(self) -> None:
        """Hold back while the queue holds ``max_backlog`` messages or more."""
        if self.backlog is None or self.max_backlog <= 0:
            return
        started = time.monotonic()
        while self._read_depth() >= self.max_backlog:
            time.sleep(0.25)
        waited = time.monotonic() - started
        with self._lock:
            self.paused += waited

    def _work(self) -> None:
        while True:
            self._wait_for_room()
            with self._lock:
                if self._next >= len(self.jobs):
                    return
                _, job = self.jobs[self._next]
                self._next += 1
            if len(job) == 1:
                self._post(job[0])
            else:
                barrier = threading.Barrier(len(job))
                twins = [threading.Thread(target=self._post, args=(r, barrier)) for r in job]
                for t in twins:
                    t.start()
                for t in twins:
                    t.join()

    def _session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        session: requests.Session = self._local.session
        return session

    def _post(self, request: Request, barrier: threading.Barrier | None = None) -> None:
        session = requests.Session() if barrier is not None else self._session()
        status: int | None = None
        body: Any = None
        attempts = 0
        while attempts < 6:
            attempts += 1
            if barrier is not None and attempts == 1:
                barrier.wait()
            try:
                response = session.post(self.url, data=request.raw, headers=request.headers, timeout=60)
                status = response.status_code
                try:
                    body = response.json()
                except ValueError:
                    body = response.text[:200]
            except requests.RequestException as exc:
                status, body = None, f"{type(exc).__name__}: {exc}"
            if request.label != "valid" or (status is not None and 200 <= status < 300):
                break
            time.sleep(0.5 * attempts)
        with self._lock:
            self.results.append(Sent(request, status, body, attempts))
