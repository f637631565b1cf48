"""The reconciler's settings: the template's defaults, and refusals of what cannot run."""

from __future__ import annotations

import pytest

from visma_webhooks.domain.errors import ConfigurationError
from visma_webhooks.domain.reconciler_settings import ReconcilerSettings

BASE = {"IDEMPOTENCY_TABLE": "t", "QUEUE_URL": "q", "VISMA_CLIENT_SECRET_ARN": "arn"}


def test_defaults():
    settings = ReconcilerSettings.from_env(BASE)
    assert [e.name for e in settings.entities] == ["customer", "supplier", "inventory", "salesorder"]
    assert settings.tenants == ()
    assert settings.passes.lookback_seconds == 15 * 60
    assert (settings.passes.page_size, settings.visma.budget.reserve_percent) == (500, 10.0)
    assert settings.visma.table_name == "t"


def test_lists_are_trimmed_and_deduplicated():
    settings = ReconcilerSettings.from_env(
        BASE | {"RECONCILE_ENTITIES": " account, customer,account ", "RECONCILE_TENANTS": "a, b,,a"}
    )
    assert [e.name for e in settings.entities] == ["account", "customer"]
    assert settings.tenants == ("a", "b")


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"RECONCILE_ENTITIES": "customers"}, "RECONCILE_ENTITIES"),
        ({"RECONCILE_PAGE_SIZE": "5000"}, "RECONCILE_PAGE_SIZE"),
        ({"RECONCILE_OVERLAP_SECONDS": "soon"}, "RECONCILE_OVERLAP_SECONDS"),
        ({"RECONCILE_SETTLE_SECONDS": "-1"}, "negative"),
        ({"QUEUE_URL": ""}, "QUEUE_URL"),
        ({"IDEMPOTENCY_TABLE": ""}, "IDEMPOTENCY_TABLE"),
    ],
)
def test_refusals(env, match):
    with pytest.raises(ConfigurationError, match=match):
        ReconcilerSettings.from_env(BASE | env)
