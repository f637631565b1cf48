"""Injected faults: latency, errors, throttling, hangs and per-path rules (the rate limit is :mod:`.budget`)."""

from __future__ import annotations

import fnmatch
import random
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from visma_webhooks_local.sandbox.responses import Response, format_seconds, merge_headers

# What the faults endpoint takes; ``rate_limit`` is the budget's calls per window (:mod:`.budget`).
FAULT_SETTINGS = ("latency", "error_rate", "throttle_rate", "timeout_rate", "timeout_seconds", "rate_limit")


@dataclass
class Rule:
    """A per-path fault: answer ``status`` (or serve normally after ``delay``), ``times`` times or always."""

    path: str
    status: int | None = None
    times: int | None = None
    method: str | None = None
    tenant: str | None = None
    delay: float = 0.0
    retry_after: float | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    hits: int = 0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Rule:
        if not isinstance(data, Mapping):
            raise ValueError("a rule must be a JSON object")
        unknown = set(data) - {f for f in cls.__dataclass_fields__ if f != "hits"}
        if unknown:
            raise ValueError(f"unknown rule fields: {sorted(unknown)}")
        method = data.get("method")
        return cls(
            path=_rule_path(data.get("path")),
            status=_rule_status(data.get("status")),
            times=_rule_times(data.get("times")),
            method=method.upper() if isinstance(method, str) else None,
            tenant=data.get("tenant"),
            delay=float(_rule_seconds("delay", data.get("delay", 0.0))),
            retry_after=None
            if data.get("retry_after") is None
            else _rule_seconds("retry_after", data["retry_after"]),
            headers=_rule_headers(data.get("headers") or {}),
            body=data.get("body"),
        )

    def matches(self, method: str, path: str, tenant: str | None) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.method and self.method != method:
            return False
        if self.tenant is not None and self.tenant != tenant:
            return False
        return path == self.path or fnmatch.fnmatchcase(path, self.path)

    def response(self, tenant: str | None, rate_headers: dict[str, str]) -> Response:
        """The injected answer (for a rule with a ``status``)."""
        status = self.status or 200
        body = self.body
        if body is None and status >= 400:
            body = {"message": f"injected fault: HTTP {status}"}
        headers = dict(rate_headers)
        if self.retry_after is not None:
            headers["Retry-After"] = format_seconds(self.retry_after)
        return Response(status, body, merge_headers(headers, self.headers), tenant, "rule")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rule_path(path: Any) -> str:
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError("rule path must be a string starting with /")
    return path


def _rule_status(status: Any) -> int | None:
    if status is not None and (not isinstance(status, int) or not 100 <= status <= 599):
        raise ValueError("rule status must be an HTTP status code")
    return status


def _rule_times(times: Any) -> int | None:
    if times is not None and (not isinstance(times, int) or times < 1):
        raise ValueError("rule times must be a positive integer (omit it for a permanent rule)")
    return times


def _rule_seconds(name: str, value: Any) -> float:
    if not isinstance(value, int | float) or value < 0:
        raise ValueError(f"rule {name} must be a number of seconds >= 0")
    return value


def _rule_headers(headers: Any) -> dict[str, str]:
    if not isinstance(headers, Mapping) or not all(
        isinstance(v, str | int | float) for v in headers.values()
    ):
        raise ValueError("rule headers must map names to strings")
    return {str(k): str(v) for k, v in headers.items()}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class Faults:
    """The fault settings and per-path rules, changeable while the sandbox runs."""

    def __init__(self, lock: threading.RLock, seed: int | None, **settings: Any):
        self._lock = lock
        self._rng = random.Random(seed)
        self.settings: dict[str, float] = {}
        self.rules: list[Rule] = []
        self.update(**settings)
        self._initial = dict(self.settings)

    def __getitem__(self, name: str) -> float:
        return self.settings[name]

    def snapshot(self) -> dict[str, Any]:
        """The current settings and rules (with how often each rule has fired)."""
        with self._lock:
            return {**self.settings, "rules": [r.to_dict() for r in self.rules]}

    def update(
        self,
        *,
        latency: float | None = None,
        error_rate: float | None = None,
        throttle_rate: float | None = None,
        timeout_rate: float | None = None,
        timeout_seconds: float | None = None,
        rules: list[Rule | Mapping[str, Any]] | None = None,
    ) -> None:
        """Change the given settings; ``rules`` replaces every rule. Raises ValueError."""
        changes: dict[str, float] = {}
        for name, value in (("latency", latency), ("timeout_seconds", timeout_seconds)):
            if value is not None:
                if not _is_number(value) or value < 0:
                    raise ValueError(f"{name} must be a number of seconds >= 0")
                changes[name] = float(value)
        for name, value in (
            ("error_rate", error_rate),
            ("throttle_rate", throttle_rate),
            ("timeout_rate", timeout_rate),
        ):
            if value is not None:
                if not _is_number(value) or not 0 <= value <= 1:
                    raise ValueError(f"{name} must be a fraction between 0 and 1")
                changes[name] = float(value)
        new_rules = (
            None if rules is None else [r if isinstance(r, Rule) else Rule.from_dict(r) for r in rules]
        )
        with self._lock:
            self.settings.update(changes)
            if new_rules is not None:
                self.rules = new_rules

    def add_rule(self, rule: Rule) -> None:
        with self._lock:
            self.rules.append(rule)

    def clear_rules(self) -> None:
        with self._lock:
            self.rules.clear()

    def take_rule(self, method: str, path: str, tenant: str | None) -> Rule | None:
        """The first rule for this request, counted as fired."""
        with self._lock:
            for rule in self.rules:
                if rule.matches(method, path, tenant):
                    rule.hits += 1
                    return rule
        return None

    def draw(self, rate: float) -> bool:
        if rate <= 0:
            return False
        with self._lock:
            return self._rng.random() < rate

    def reset(self) -> None:
        """The settings as the sandbox started with, and no rules."""
        with self._lock:
            self.settings = dict(self._initial)
            self.rules.clear()
