"""The ReconcilerFunction as CloudFormation wires it: its schedule and switch, its settings,
least-privilege IAM (its table access limited to the keys it uses)."""

from __future__ import annotations

import pytest

from tests.template.cfn import allowed, canonical, cfn, get_att, parameter_values, ref, resources
from visma_webhooks.domain.reconciler_settings import ReconcilerSettings
from visma_webhooks.domain.reconciling import ENTITIES


@pytest.fixture(scope="module")
def template():
    return cfn()


def _rule(template, **params):
    built = resources(template, parameter_values(template, **params))
    (rule,) = [r for n, r in built.items() if r["Type"] == "AWS::Events::Rule" and n.startswith("Reconciler")]
    return rule["Properties"]


def test_it_runs_on_a_schedule_of_the_interval_parameter_and_can_be_switched_off(template):
    rule = _rule(template)
    assert rule["State"] == "ENABLED"
    assert rule["ScheduleExpression"] == {"Fn::Sub": "rate(${ReconcileIntervalMinutes} minutes)"}
    assert template["Parameters"]["ReconcileIntervalMinutes"]["Default"] == 15
    assert template["Parameters"]["ReconcileIntervalMinutes"]["MinValue"] >= 2  # "rate(1 minutes)" is invalid
    assert _rule(template, ReconcilerEnabled="false")["State"] == "DISABLED"
    (target,) = rule["Targets"]
    assert target["Arn"] == get_att("ReconcilerFunction", "Arn")


def test_its_default_settings_are_ones_the_code_accepts(template):
    function = template["Resources"]["ReconcilerFunction"]["Properties"]
    variables = function["Environment"]["Variables"]
    assert variables["RECONCILE_ENTITIES"] == ref("ReconcileEntities")
    assert variables["RECONCILE_TENANTS"] == ref("ReconcileTenants")
    defaults = {k: str(v.get("Default", "")) for k, v in template["Parameters"].items()}
    env = {
        "IDEMPOTENCY_TABLE": "t",
        "QUEUE_URL": "q",
        "VISMA_CLIENT_SECRET_ARN": "s",
        "RECONCILE_ENTITIES": defaults["ReconcileEntities"],
        "RECONCILE_INTERVAL_MINUTES": defaults["ReconcileIntervalMinutes"],
    }
    settings = ReconcilerSettings.from_env(env)
    assert [e.name for e in settings.entities] == ["customer", "supplier", "inventory", "salesorder"]
    assert set(template["Parameters"]["ReconcileEntities"]["Description"].replace(",", " ").split()) >= set(
        ENTITIES
    )
    # no reserved concurrency (an account with the minimum of 10 could not deploy it): runs on
    # one entity at once are kept apart by the cursor's version
    assert "ReservedConcurrentExecutions" not in function
    assert function["Timeout"] < template["Parameters"]["ReconcileIntervalMinutes"]["MinValue"] * 60 * 3


def test_reconciler_iam_is_least_privilege(template):
    built = resources(template, parameter_values(template))
    role = built["ReconcilerRole"]
    table = canonical(get_att("IdempotencyTable", "Arn"))
    group = canonical(get_att("ReconcilerLogGroup", "Arn"))
    assert allowed(role) == {
        ("sqs:SendMessage", canonical(get_att("NotificationsQueue", "Arn"))),
        ("dynamodb:GetItem", table),
        ("dynamodb:PutItem", table),
        ("dynamodb:UpdateItem", table),
        ("dynamodb:BatchGetItem", table),
        ("secretsmanager:GetSecretValue", canonical(ref("VismaClientSecret"))),
        ("logs:CreateLogStream", group),
        ("logs:PutLogEvents", group),
        ("xray:PutTraceSegments", '"*"'),
        ("xray:PutTelemetryRecords", '"*"'),
    }
    (state,) = [
        s for s in role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"] if s["Sid"] == "State"
    ]
    keys = state["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
    assert set(keys) == {"reconcile#*", "backfill#*", "budget#*", "tenants#seen", "resource#*"}
