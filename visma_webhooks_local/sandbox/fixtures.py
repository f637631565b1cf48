"""The documents the sandbox serves, per service: fixtures from files, writes, deletions, synthesised ones.

Financials fixtures are ``events/visma-resources.json`` (path → document); those of the
other services are ``events/visma-services.json`` (service → path → document).
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from visma_webhooks.domain.ordering import modified_at
from visma_webhooks.domain.services import FINANCIALS
from visma_webhooks_local.sandbox.services import SANDBOX_SERVICES, service

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_FIXTURES = PROJECT_ROOT / "events" / "visma-resources.json"
DEFAULT_SERVICE_FIXTURES = PROJECT_ROOT / "events" / "visma-services.json"

Fixtures = str | Path | Mapping[str, Any] | None
MODIFIED = "lastModifiedDateTime"
_MILLISECOND = timedelta(milliseconds=1)


def _read(fixtures: Fixtures, default: Path) -> dict[str, Any]:
    if isinstance(fixtures, Mapping):
        return copy.deepcopy(dict(fixtures))
    path = Path(fixtures) if fixtures is not None else default
    if fixtures is None and not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: fixtures must be a JSON object")
    return data


def load_fixtures(fixtures: Fixtures) -> dict[str, Any]:
    """The Financials fixtures as given, read from a file, or the project's (none where absent)."""
    data = _read(fixtures, DEFAULT_FIXTURES)
    if not all(isinstance(k, str) and SANDBOX_SERVICES[FINANCIALS].api.match(k) for k in data):
        raise ValueError("fixtures must be a JSON object mapping /v1/... (or /v2/...) paths to documents")
    return data


def load_service_fixtures(fixtures: Fixtures) -> dict[str, dict[str, Any]]:
    """The other services' fixtures (service → path → document), or the project's."""
    data = _read(fixtures, DEFAULT_SERVICE_FIXTURES)
    result: dict[str, dict[str, Any]] = {}
    for name, documents in data.items():
        api = service(name).api
        if not isinstance(documents, dict) or not all(isinstance(k, str) and api.match(k) for k in documents):
            raise ValueError(f"fixtures of {name} must map its API paths to documents")
        result[name] = documents
    return result


def _unwrapped(body: Mapping[str, Any]) -> dict[str, Any]:
    """Financials' update DTOs wrap each field as ``{"value": x}``; a GET shows ``x``."""
    return {k: v["value"] if isinstance(v, dict) and set(v) == {"value"} else v for k, v in body.items()}


class Documents:
    """Every service's documents; not thread-safe on its own (the sandbox holds its lock)."""

    def __init__(self, financials: Fixtures, others: Fixtures, synthesize: bool):
        self.synthesize = synthesize
        self._fixtures: dict[str, dict[str, Any]] = {name: {} for name in SANDBOX_SERVICES}
        self._fixtures |= load_service_fixtures(others)
        self._fixtures[FINANCIALS] = load_fixtures(financials)
        self._stamps = itertools.count(1)
        self._last = datetime.min.replace(tzinfo=UTC)
        self.reset()

    def reset(self) -> None:
        """The fixtures again; one without ``lastModifiedDateTime`` gets one, as every resource has."""
        self.by_service: dict[str, dict[str, Any]] = copy.deepcopy(self._fixtures)
        self.deleted: dict[str, set[str]] = {name: set() for name in SANDBOX_SERVICES}
        for name, documents in self.by_service.items():
            for path, document in documents.items():
                if SANDBOX_SERVICES[name].match(path) is not None:
                    self._created(document)

    def modified(self, current: Any = None) -> str:
        """A new ``lastModifiedDateTime`` (UTC, milliseconds, no offset, as Visma writes it).

        Later than ``current``'s own and than every time stored before, as a change made now
        is in Visma: so each resource's only increases, two changes never share one, and a
        client paging with a watermark meets every change after it.
        """
        self._seen(current)
        now = datetime.now(UTC)
        self._last = max(now.replace(microsecond=now.microsecond // 1000 * 1000), self._last + _MILLISECOND)
        return self._last.strftime("%Y-%m-%dT%H:%M:%S.") + f"{self._last.microsecond // 1000:03d}"

    def _seen(self, document: Any) -> None:
        known = modified_at(document)
        if known is not None:
            self._last = max(
                self._last, datetime.strptime(known, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
            )

    def _created(self, document: Any) -> None:
        if isinstance(document, dict) and MODIFIED not in document:
            document[MODIFIED] = self.modified()
        self._seen(document)

    def stored(self, service_name: str) -> list[tuple[str, Any]]:
        """(path, a copy of the document) of every stored resource that exists (what a list shows)."""
        svc = SANDBOX_SERVICES[service_name]
        return [
            (path, copy.deepcopy(document))
            for path, document in self.by_service[service_name].items()
            if isinstance(document, dict)
            and svc.match(path) is not None
            and path not in self.deleted[service_name]
        ]

    def get(self, service_name: str, path: str) -> Any:
        """The document at ``path`` (a copy), a synthesised one, or None for a 404.

        A path that names no single resource is served only from the fixtures; an id
        segment starting with ``missing`` is never found; a deleted resource stays gone.
        """
        documents = self.by_service[service_name]
        found = SANDBOX_SERVICES[service_name].match(path)
        if found is None:
            return (
                None
                if SANDBOX_SERVICES[service_name].resource.match(path)
                else copy.deepcopy(documents.get(path))
            )
        if path in self.deleted[service_name]:
            return None
        document = documents.get(path)
        if document is None and self.synthesize:
            document = SANDBOX_SERVICES[service_name].synthesise(found)
        return copy.deepcopy(document)

    def put(self, service_name: str, path: str, document: Any) -> None:
        """Store a document as given; a resource without ``lastModifiedDateTime`` gets one."""
        if not SANDBOX_SERVICES[service_name].api.match(path):
            raise ValueError(f"{path} is not a path of the {service_name} API")
        stored = self.by_service[service_name][path] = copy.deepcopy(document)
        if SANDBOX_SERVICES[service_name].match(path) is not None:
            self._created(stored)
        self.deleted[service_name].discard(path)

    def write(self, service_name: str, path: str, body: Any) -> Any:
        """Apply a write to the resource at ``path``: its fields as written, fresh save stamps.

        Returns the document as stored now, or None when the path names no resource that
        exists (nothing changes then).
        """
        current = self.get(service_name, path)
        if not isinstance(current, dict) or SANDBOX_SERVICES[service_name].match(path) is None:
            return None
        updated = {**current, **(_unwrapped(body) if isinstance(body, Mapping) else {})}
        updated[MODIFIED] = self.modified(current)
        updated["timeStamp"] = base64.b64encode(next(self._stamps).to_bytes(8, "big")).decode()
        self.by_service[service_name][path] = updated
        return copy.deepcopy(updated)

    def delete(self, service_name: str, path: str) -> bool:
        """Delete the resource; False if there was none (then nothing changes)."""
        if self.get(service_name, path) is None or SANDBOX_SERVICES[service_name].match(path) is None:
            return False
        self.by_service[service_name].pop(path, None)
        self.deleted[service_name].add(path)
        return True
