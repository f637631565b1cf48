"""The documents the sandbox serves: fixtures from a file, and synthesised ones for any other id."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_FIXTURES = PROJECT_ROOT / "events" / "visma-resources.json"


def load_fixtures(fixtures: str | Path | Mapping[str, Any] | None) -> dict[str, Any]:
    """The fixtures as given, read from a file, or the project's (none where that file is absent)."""
    if isinstance(fixtures, Mapping):
        data: Any = dict(fixtures)
    else:
        path = Path(fixtures) if fixtures is not None else DEFAULT_FIXTURES
        if fixtures is None and not path.exists():
            return {}
        data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not all(isinstance(k, str) and k.startswith("/v1/") for k in data):
        raise ValueError("fixtures must be a JSON object mapping /v1/... paths to documents")
    return copy.deepcopy(data)


def lookup(resources: Mapping[str, Any], path: str, synthesize: bool) -> Any:
    """The document at ``path`` (a copy), a synthesised one, or None for a 404.

    An id segment starting with ``missing`` is never found, fixtures or not.
    """
    segments = path.rstrip("/").split("/")[2:]  # after "/v1"
    if len(segments) < 2 or not all(segments):
        return copy.deepcopy(resources.get(path))
    entity, ids = segments[0], segments[1:]
    if any(s.lower().startswith("missing") for s in ids):
        return None
    document = resources.get(path)
    if document is not None:
        return copy.deepcopy(document)
    if synthesize:
        return {"id": "/".join(ids), "entity": entity, "synthetic": True}
    return None
