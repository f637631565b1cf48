"""The data path as CloudFormation wires it: route, queues, redrive, event source, table, IAM."""

from __future__ import annotations

import pytest

from tests.template.cfn import (
    allowed,
    canonical,
    cfn,
    get_att,
    of_type,
    one_of_type,
    parameter_values,
    policy_loader_calls,
    ref,
    resolve,
    resources,
)

QUEUE_ARN = canonical(get_att("NotificationsQueue", "Arn"))
DLQ_ARN = canonical(get_att("NotificationsDLQ", "Arn"))
TRACING = {("xray:PutTraceSegments", '"*"'), ("xray:PutTelemetryRecords", '"*"')}


@pytest.fixture(scope="module")
def template():
    return cfn()


def _function(template, logical_id, **params):
    return resources(template, parameter_values(template, **params))[logical_id]


def _role(template, function_id, **params):
    values = parameter_values(template, **params)
    function = resources(template, values)[function_id]
    role_ref = function["Properties"]["Role"]
    assert role_ref == get_att(role_ref["Fn::GetAtt"][0], "Arn"), "the function's role is the template's own"
    role = resources(template, values)[role_ref["Fn::GetAtt"][0]]
    assert role["Type"] == "AWS::IAM::Role"
    assert not role["Properties"].get("ManagedPolicyArns"), "no managed policies: they grant on '*'"
    trust = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust == [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ]
    return role


def _logs(function):
    group = function["Properties"]["LoggingConfig"]["LogGroup"]
    return {
        ("logs:CreateLogStream", canonical(get_att(group["Ref"], "Arn"))),
        ("logs:PutLogEvents", canonical(get_att(group["Ref"], "Arn"))),
    }


def test_no_generated_role_and_no_managed_policy(template):
    # samtranslator generates a role (with managed policies granting on "*") only for a
    # function without one; every function here has its own least-privilege role.
    assert set(of_type(template, "AWS::IAM::Role")) == {"IngestRole", "ProcessorRole", "ReconcilerRole"}
    assert policy_loader_calls() == 0


def test_post_webhooks_visma_is_the_only_route_and_invokes_ingest(template):
    _, api = one_of_type(template, "AWS::ApiGatewayV2::Api")
    paths = api["Properties"]["Body"]["paths"]
    assert list(paths) == ["/webhooks/visma"]
    assert list(paths["/webhooks/visma"]) == ["post"]
    integration = paths["/webhooks/visma"]["post"]["x-amazon-apigateway-integration"]
    assert integration["type"] == "aws_proxy"
    assert integration["payloadFormatVersion"] == "2.0"
    assert "${IngestFunction.Arn}" in integration["uri"]["Fn::Sub"]

    permissions = {
        n: p for n, p in of_type(template, "AWS::Lambda::Permission").items() if n.startswith("Ingest")
    }
    assert len(permissions) == 1
    (permission,) = permissions.values()
    assert permission["Properties"]["FunctionName"] == ref("IngestFunction")
    assert permission["Properties"]["Principal"] == "apigateway.amazonaws.com"
    source, variables = permission["Properties"]["SourceArn"]["Fn::Sub"]
    assert source.endswith("/POST/webhooks/visma")
    assert variables["__ApiId__"] == ref("WebhookApi")


def test_ingest_may_only_send_to_the_two_queues_and_read_its_secret(template):
    role = _role(template, "IngestFunction")
    ingest = _function(template, "IngestFunction")
    assert allowed(role) == {
        ("sqs:SendMessage", QUEUE_ARN),
        ("sqs:SendMessage", DLQ_ARN),
        ("secretsmanager:GetSecretValue", canonical(ref("WebhookSecret"))),
        *_logs(ingest),
        *TRACING,
    }


@pytest.mark.parametrize(
    ("params", "extra"),
    [
        ({}, set()),
        (
            {"EventBusName": "erp-events", "CreateArchiveBucket": "true"},
            {
                (
                    "events:PutEvents",
                    canonical(
                        {
                            "Fn::Sub": "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}"
                            ":event-bus/${EventBusName}"
                        }
                    ),
                ),
                ("s3:PutObject", canonical({"Fn::Sub": "${ArchiveBucket.Arn}/*"})),
            },
        ),
    ],
    ids=["defaults", "bus-and-archive"],
)
def test_processor_iam_is_least_privilege(template, params, extra):
    role = _role(template, "ProcessorFunction", **params)
    processor = _function(template, "ProcessorFunction", **params)
    table = canonical(get_att("IdempotencyTable", "Arn"))
    assert allowed(role) == {
        ("sqs:ReceiveMessage", QUEUE_ARN),
        ("sqs:DeleteMessage", QUEUE_ARN),
        ("sqs:GetQueueAttributes", QUEUE_ARN),
        ("sqs:ChangeMessageVisibility", QUEUE_ARN),
        ("sqs:SendMessage", QUEUE_ARN),  # a waiting notification goes back as a delayed copy
        ("sqs:SendMessage", DLQ_ARN),  # one whose attempts are used up (waits reset SQS's count)
        ("dynamodb:GetItem", table),
        ("dynamodb:PutItem", table),
        ("dynamodb:UpdateItem", table),
        ("secretsmanager:GetSecretValue", canonical(ref("VismaClientSecret"))),
        *_logs(processor),
        *TRACING,
        *extra,
    }


def test_only_actions_without_resource_level_permissions_are_granted_on_star(template):
    for role_name in of_type(template, "AWS::IAM::Role"):
        for action, resource in allowed(resources(template, parameter_values(template))[role_name]):
            if resource == '"*"':
                assert action.startswith("xray:"), (role_name, action)


def test_queue_redrives_to_the_dlq_after_max_receive_count(template):
    values = parameter_values(template)
    queue = resources(template, values)["NotificationsQueue"]["Properties"]
    dlq = resources(template, values)["NotificationsDLQ"]["Properties"]
    raw = template["Resources"]["NotificationsQueue"]["Properties"]["RedrivePolicy"]
    assert raw["deadLetterTargetArn"] == get_att("NotificationsDLQ", "Arn")
    assert raw["maxReceiveCount"] == ref("MaxReceiveCount")
    assert template["Parameters"]["MaxReceiveCount"]["Default"] == 5
    assert queue["RedrivePolicy"]["maxReceiveCount"] == "5"
    assert dlq["MessageRetentionPeriod"] == 14 * 24 * 3600
    assert dlq["MessageRetentionPeriod"] > queue["MessageRetentionPeriod"]
    # the processor knows the last receive by the same parameter
    processor = template["Resources"]["ProcessorFunction"]["Properties"]
    assert processor["Environment"]["Variables"]["MAX_RECEIVE_COUNT"] == ref("MaxReceiveCount")


def test_visibility_is_at_least_six_times_the_processor_timeout_for_every_allowed_timeout(template):
    parameter = template["Parameters"]["ProcessorTimeoutSeconds"]
    allowed_timeouts = [str(v) for v in parameter["AllowedValues"]]
    assert str(parameter["Default"]) in allowed_timeouts
    processor = template["Resources"]["ProcessorFunction"]["Properties"]
    assert processor["Timeout"] == ref("ProcessorTimeoutSeconds")
    (mapping,) = of_type(template, "AWS::Lambda::EventSourceMapping").values()
    window = mapping["Properties"]["MaximumBatchingWindowInSeconds"]
    for timeout in allowed_timeouts:
        values = parameter_values(template, ProcessorTimeoutSeconds=timeout)
        queue = resolve(template, template["Resources"]["NotificationsQueue"], values)
        visibility = int(queue["Properties"]["VisibilityTimeout"])
        assert visibility >= 6 * int(timeout) + window, timeout
        assert visibility <= 43_200, timeout  # the SQS maximum
        assert int(timeout) <= 900, timeout  # the Lambda maximum


def test_processor_consumes_the_queue_in_batches_with_partial_failures(template):
    (mapping,) = of_type(template, "AWS::Lambda::EventSourceMapping").values()
    properties = mapping["Properties"]
    assert properties["EventSourceArn"] == get_att("NotificationsQueue", "Arn")
    assert properties["FunctionName"] == ref("ProcessorFunction")
    assert properties["BatchSize"] == 10
    assert 0 < properties["MaximumBatchingWindowInSeconds"] <= 5
    assert properties["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert properties["ScalingConfig"]["MaximumConcurrency"] == ref("MaximumConcurrency")
    assert properties.get("Enabled", True) is True
    parameter = template["Parameters"]["MaximumConcurrency"]
    assert parameter["Default"] == 5
    assert parameter["MinValue"] >= 2  # the SQS event source's minimum


def test_idempotency_table(template):
    table = template["Resources"]["IdempotencyTable"]
    assert table["Type"] == "AWS::DynamoDB::Table"
    properties = table["Properties"]
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert properties["AttributeDefinitions"] == [{"AttributeName": "id", "AttributeType": "S"}]
    assert properties["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert properties["SSESpecification"] == {"SSEEnabled": True}
    variables = template["Resources"]["ProcessorFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["IDEMPOTENCY_TABLE"] == ref("IdempotencyTable")
    assert variables["IDEMPOTENCY_TTL_HOURS"] == ref("IdempotencyTtlHours")
    assert template["Parameters"]["IdempotencyTtlHours"]["Default"] == 168


INGEST_ENVIRONMENT = {
    "QUEUE_URL": ref("NotificationsQueue"),
    "DLQ_URL": ref("NotificationsDLQ"),
    "WEBHOOK_SECRET_ARN": ref("WebhookSecret"),
    "ALLOWED_RESOURCE_HOSTS": "",
    "ALLOWED_SALESORDER_HOSTS": "",
    "ALLOWED_JOURNALTX_HOSTS": "",
    "LEGACY_SALESORDER_RULE": "v3",
    "ALLOWED_SOURCE_IPS": "18.202.121.26,34.242.104.102,54.220.26.45",
    "WEBHOOK_TIMESTAMP_TOLERANCE_SECONDS": "0",
    "POWERTOOLS_SERVICE_NAME": ref("AWS::StackName"),
    "POWERTOOLS_METRICS_NAMESPACE": "VismaWebhooks",
}
PROCESSOR_ENVIRONMENT = {
    "QUEUE_URL": ref("NotificationsQueue"),
    "DLQ_URL": ref("NotificationsDLQ"),
    "IDEMPOTENCY_TABLE": ref("IdempotencyTable"),
    "IDEMPOTENCY_TTL_HOURS": "168",
    "VISMA_API_BASE_URL": "https://api.finance.visma.net",
    "VISMA_SALESORDERS_BASE_URL": "https://salesorder.visma.net",
    "VISMA_JOURNALTX_BASE_URL": "https://journaltx.visma.net",
    "VISMA_FINANCIALS_SCOPE": "",
    "VISMA_SALESORDERS_SCOPE": "",
    "VISMA_JOURNALTX_SCOPE": "",
    "VISMA_TOKEN_URL": "https://connect.visma.com/connect/token",
    "FINGERPRINT_IGNORE_FIELDS": "",
    "VISMA_BUDGET_RESERVE_PERCENT": "10",
    "VISMA_BUDGET_WINDOW_SECONDS": "3600",
    "VISMA_BUDGET_ASSUMED_LIMIT": "500",
    "VISMA_CLIENT_SECRET_ARN": ref("VismaClientSecret"),
    "HANDLER_MODULES": "visma_webhooks.notification_handlers.log",
    "FEEDBACK_SOURCE": ref("AWS::StackName"),
    "MAX_RECEIVE_COUNT": "5",
    "ALLOWED_RESOURCE_HOSTS": "",
    "ALLOWED_SALESORDER_HOSTS": "",
    "ALLOWED_JOURNALTX_HOSTS": "",
    "LEGACY_SALESORDER_RULE": "v3",
    "EVENT_BUS_NAME": "",
    "ARCHIVE_BUCKET": "",
    "POWERTOOLS_SERVICE_NAME": ref("AWS::StackName"),
    "POWERTOOLS_METRICS_NAMESPACE": "VismaWebhooks",
}


@pytest.mark.parametrize(
    ("function_id", "expected"),
    [("IngestFunction", INGEST_ENVIRONMENT), ("ProcessorFunction", PROCESSOR_ENVIRONMENT)],
)
def test_environment_matches_the_code_contract_with_default_parameters(template, function_id, expected):
    variables = _function(template, function_id)["Properties"]["Environment"]["Variables"]
    assert variables == expected


def test_optional_processor_settings_follow_their_parameters(template):
    variables = _function(
        template,
        "ProcessorFunction",
        EventBusName="erp-events",
        CreateArchiveBucket="true",
        FeedbackSource="Shop sync",
    )["Properties"]["Environment"]["Variables"]
    assert variables["EVENT_BUS_NAME"] == "erp-events"
    assert variables["ARCHIVE_BUCKET"] == ref("ArchiveBucket")
    assert variables["FEEDBACK_SOURCE"] == "Shop sync"


def test_each_visma_service_follows_its_parameters(template):
    """Each API service has its own base URL and scopes; the processor reads them by these names."""
    variables = _function(
        template,
        "ProcessorFunction",
        VismaSalesOrdersBaseUrl="https://salesorder.example.test",
        VismaJournalTxBaseUrl="https://journaltx.example.test",
        VismaFinancialsScope="vismanet_erp_service_api:read",
        VismaSalesOrdersScope="salesorder:read salesorder:update",
        VismaJournalTxScope="journaltransaction:read",
        FingerprintIgnoreFields="lastModifiedDateTime,timeStamp,changeCounter",
    )["Properties"]["Environment"]["Variables"]
    assert variables["VISMA_SALESORDERS_BASE_URL"] == "https://salesorder.example.test"
    assert variables["VISMA_JOURNALTX_BASE_URL"] == "https://journaltx.example.test"
    assert variables["VISMA_FINANCIALS_SCOPE"] == "vismanet_erp_service_api:read"
    assert variables["VISMA_SALESORDERS_SCOPE"] == "salesorder:read salesorder:update"
    assert variables["VISMA_JOURNALTX_SCOPE"] == "journaltransaction:read"
    assert variables["FINGERPRINT_IGNORE_FIELDS"] == "lastModifiedDateTime,timeStamp,changeCounter"


def test_outputs(template):
    outputs = template["Outputs"]
    webhook = outputs["WebhookUrl"]["Value"]["Fn::Sub"]
    assert webhook.startswith("https://${WebhookApi}.execute-api.")
    assert webhook.endswith("/webhooks/visma")
    assert outputs["QueueUrl"]["Value"] == ref("NotificationsQueue")
    assert outputs["DlqUrl"]["Value"] == ref("NotificationsDLQ")
    assert outputs["WebhookSecretArn"]["Value"] == ref("WebhookSecret")
    assert outputs["VismaClientSecretArn"]["Value"] == ref("VismaClientSecret")
    assert outputs["IdempotencyTableName"]["Value"] == ref("IdempotencyTable")
    assert "#dashboards:name=${Dashboard}" in outputs["DashboardUrl"]["Value"]["Fn::Sub"]
