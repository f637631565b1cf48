"""Production settings: runtime, tracing, logs, encryption, throttling, the IP allow-list,
secrets, alarms and the dashboard (whose custom metrics must be those the code emits)."""

from __future__ import annotations

import ipaddress
import re

import pytest

from tests.template.cfn import (
    as_list,
    cfn,
    dashboard_body,
    dashboard_metrics,
    get_att,
    of_type,
    one_of_type,
    parameter_values,
    ref,
    resources,
    sub_placeholders,
)
from tests.template.emitted import dimension_calls, emitted_metrics
from visma_webhooks.domain.settings import networks

NAMESPACE = "VismaWebhooks"
SERVICE_DIMENSION = {"service": "<AWS::StackName>"}
DISPATCHER_IPS = {"18.202.121.26", "34.242.104.102", "54.220.26.45"}
INGEST_METRICS = {
    "NotificationsReceived",
    "NotificationsAccepted",
    "NotificationsRejected",
    "DuplicatesInDelivery",
    "RequestsUnauthorized",
    "RequestsForbidden",
    "RequestsMalformed",
    "RequestsTooLarge",
    "EnqueueFailures",
}
PROCESSOR_METRICS = {
    "NotificationsSucceeded",
    "NotificationsFailed",
    "NotificationsRetried",
    "NotificationsThrottled",
    "NotificationsUnhandled",
    "NotificationsDuplicate",
    "FeedbackPosted",
    "FeedbackFailed",
    "VismaThrottled",
    "HandlerErrors",
}


@pytest.fixture(scope="module")
def template():
    return cfn()


@pytest.fixture(scope="module")
def emitted():
    return emitted_metrics()


def _functions(template):
    functions = of_type(template, "AWS::Lambda::Function")
    assert set(functions) == {"IngestFunction", "ProcessorFunction", "ReconcilerFunction"}
    return functions


# --- runtime ---------------------------------------------------------------------------------


def test_every_function_runs_python313_on_arm64_with_active_tracing_and_both_layers(template):
    (layer_id,) = of_type(template, "AWS::Lambda::LayerVersion")
    for name, function in _functions(template).items():
        properties = function["Properties"]
        assert properties["Runtime"] == "python3.13", name
        assert properties["Architectures"] == ["arm64"], name
        assert properties["TracingConfig"] == {"Mode": "Active"}, name
        managed, shared = properties["Layers"]
        assert managed == {
            "Fn::Sub": "arn:${AWS::Partition}:lambda:${AWS::Region}:017000801446:layer:"
            "AWSLambdaPowertoolsPythonV3-python313-arm64:${PowertoolsLayerVersion}"
        }, name
        assert shared == ref(layer_id), name
        variables = properties["Environment"]["Variables"]
        assert variables["POWERTOOLS_SERVICE_NAME"] == ref("AWS::StackName"), name
        assert variables["POWERTOOLS_METRICS_NAMESPACE"] == NAMESPACE, name
    layer = template["Resources"][layer_id]["Properties"]
    assert layer["CompatibleRuntimes"] == ["python3.13"]
    assert layer["CompatibleArchitectures"] == ["arm64"]


# --- logs ------------------------------------------------------------------------------------


def test_every_log_group_keeps_logs_for_the_retention_parameter(template):
    groups = of_type(template, "AWS::Logs::LogGroup")
    assert len(groups) == 4
    for name, group in groups.items():
        assert group["Properties"]["RetentionInDays"] == ref("LogRetentionDays"), name
    assert (
        template["Parameters"]["LogRetentionDays"]["Default"]
        in template["Parameters"]["LogRetentionDays"]["AllowedValues"]
    )
    # each function logs to its own group of these, and so does the API's access log
    logged = {f["Properties"]["LoggingConfig"]["LogGroup"]["Ref"] for f in _functions(template).values()}
    _, stage = one_of_type(template, "AWS::ApiGatewayV2::Stage")
    logged.add(stage["Properties"]["AccessLogSettings"]["DestinationArn"]["Fn::GetAtt"][0])
    assert logged == set(groups)


# --- encryption ------------------------------------------------------------------------------


def test_queues_are_encrypted_and_tls_only(template):
    queues = of_type(template, "AWS::SQS::Queue")
    assert set(queues) == {"NotificationsQueue", "NotificationsDLQ"}
    for name, queue in queues.items():
        assert queue["Properties"]["SqsManagedSseEnabled"] is True, name
    (policy,) = of_type(template, "AWS::SQS::QueuePolicy").values()
    assert {q["Ref"] for q in policy["Properties"]["Queues"]} == set(queues)
    _assert_tls_only(policy["Properties"]["PolicyDocument"], "sqs:*")


def test_table_is_encrypted_with_point_in_time_recovery(template):
    table = template["Resources"]["IdempotencyTable"]["Properties"]
    assert table["SSESpecification"]["SSEEnabled"] is True
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True


def test_archive_bucket_exists_only_when_asked_and_is_encrypted_private_and_tls_only(template):
    default = resources(template, parameter_values(template))
    assert not [n for n, r in default.items() if r["Type"].startswith("AWS::S3::")]
    created = resources(template, parameter_values(template, CreateArchiveBucket="true"))
    bucket = created["ArchiveBucket"]
    assert bucket["DeletionPolicy"] == "Retain"
    properties = bucket["Properties"]
    (rule,) = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    assert properties["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    policy = created["ArchiveBucketPolicy"]["Properties"]
    assert policy["Bucket"] == ref("ArchiveBucket")
    _assert_tls_only(policy["PolicyDocument"], "s3:*")


def _assert_tls_only(document, action):
    (statement,) = document["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Principal"] == "*"
    assert statement["Action"] == action
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


# --- secrets ---------------------------------------------------------------------------------

SECRET_LIKE = re.compile(
    r"(AKIA|ASIA)[A-Z0-9]{16}"  # AWS access key id
    r"|-----BEGIN"  # key material
    r"|\{\{resolve:"  # a dynamic reference resolves the value into the environment
    r"|^[A-Za-z0-9+/=_-]{32,}$"  # a long token-like string
)


def test_secrets_are_secrets_manager_arns_never_values(template):
    secrets = of_type(template, "AWS::SecretsManager::Secret")
    assert set(secrets) == {"WebhookSecret", "VismaClientSecret"}
    for name, secret in secrets.items():
        assert "SecretString" not in secret["Properties"], f"{name}: a literal secret in the template"
        assert "GenerateSecretString" in secret["Properties"], name
    no_echo = [name for name, p in template["Parameters"].items() if p.get("NoEcho")]
    assert not no_echo, "secrets are not passed as parameters"
    for params in ({}, {"EventBusName": "b", "CreateArchiveBucket": "true", "FeedbackSource": "x"}):
        values = parameter_values(template, **params)
        for function_name in _functions(template):
            variables = resources(template, values)[function_name]["Properties"]["Environment"]["Variables"]
            for key, value in variables.items():
                where = f"{function_name} {key}"
                if isinstance(value, dict):
                    (kind,) = value
                    assert kind in ("Ref", "Fn::GetAtt"), f"{where}: {value}"
                    target = value[kind] if kind == "Ref" else value[kind][0]
                    if target in secrets:
                        assert kind == "Ref", f"{where}: only a secret's ARN"
                        assert key.endswith("_SECRET_ARN"), where
                    continue
                assert not SECRET_LIKE.search(str(value)), f"{where} looks like a secret"
                if re.search(r"SECRET|PASSWORD|CREDENTIAL|API_KEY", key):
                    pytest.fail(f"{where}: a secret-named variable must hold a secret's ARN")
    for function_name, function in _functions(template).items():
        secret_refs = {
            v["Ref"]
            for v in function["Properties"]["Environment"]["Variables"].values()
            if isinstance(v, dict) and v.get("Ref") in secrets
        }
        assert (
            secret_refs
            == {
                "IngestFunction": {"WebhookSecret"},
                "ProcessorFunction": {"VismaClientSecret"},
                "ReconcilerFunction": {"VismaClientSecret"},
            }[function_name]
        )


# --- webhook endpoint ------------------------------------------------------------------------


def test_default_route_is_throttled_by_parameters(template):
    _, stage = one_of_type(template, "AWS::ApiGatewayV2::Stage")
    assert stage["Properties"]["StageName"] == "$default"
    assert stage["Properties"]["DefaultRouteSettings"] == {
        "ThrottlingRateLimit": ref("ApiThrottlingRateLimit"),
        "ThrottlingBurstLimit": ref("ApiThrottlingBurstLimit"),
    }
    parameters = template["Parameters"]
    assert (
        0
        < parameters["ApiThrottlingRateLimit"]["Default"]
        <= parameters["ApiThrottlingBurstLimit"]["Default"]
    )


@pytest.mark.parametrize(("switch", "expected"), [("true", DISPATCHER_IPS), ("false", set())])
def test_source_ip_allow_list_defaults_to_the_dispatcher_and_can_be_switched_off(template, switch, expected):
    values = parameter_values(template, RestrictSourceIps=switch)
    variables = resources(template, values)["IngestFunction"]["Properties"]["Environment"]["Variables"]
    value = variables["ALLOWED_SOURCE_IPS"]
    assert {str(n.network_address) for n in networks(value)} == expected  # parsed as the code parses it
    if expected:
        assert all(n.prefixlen == n.max_prefixlen for n in networks(value))
    assert template["Parameters"]["RestrictSourceIps"]["Default"] == "true"


def test_a_custom_allow_list_reaches_the_function(template):
    values = parameter_values(template, DispatcherSourceIps="203.0.113.0/24, 2001:db8::1")
    variables = resources(template, values)["IngestFunction"]["Properties"]["Environment"]["Variables"]
    assert networks(variables["ALLOWED_SOURCE_IPS"]) == (
        ipaddress.ip_network("203.0.113.0/24"),
        ipaddress.ip_network("2001:db8::1"),
    )
    assert re.fullmatch(
        template["Parameters"]["DispatcherSourceIps"]["AllowedPattern"], "203.0.113.0/24, 2001:db8::1"
    )


def test_timestamp_tolerance_is_a_parameter_off_by_default(template):
    variables = template["Resources"]["IngestFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["WEBHOOK_TIMESTAMP_TOLERANCE_SECONDS"] == ref("WebhookTimestampToleranceSeconds")
    assert template["Parameters"]["WebhookTimestampToleranceSeconds"]["Default"] == 0


# --- alarms ----------------------------------------------------------------------------------


def _alarms(template, **params):
    return {
        name: r["Properties"]
        for name, r in resources(template, parameter_values(template, **params)).items()
        if r["Type"] == "AWS::CloudWatch::Alarm"
    }


def test_alarm_set(template):
    alarms = _alarms(template)
    summary = {
        name: (a["Namespace"], a["MetricName"], tuple((d["Name"], str(d["Value"])) for d in a["Dimensions"]))
        for name, a in alarms.items()
    }
    dlq_name = str(get_att("NotificationsDLQ", "QueueName"))
    queue_name = str(get_att("NotificationsQueue", "QueueName"))
    assert summary == {
        "DlqMessagesAlarm": ("AWS/SQS", "ApproximateNumberOfMessagesVisible", (("QueueName", dlq_name),)),
        "OldestMessageAgeAlarm": ("AWS/SQS", "ApproximateAgeOfOldestMessage", (("QueueName", queue_name),)),
        "ProcessorErrorsAlarm": ("AWS/Lambda", "Errors", (("FunctionName", str(ref("ProcessorFunction"))),)),
        "Ingest5xxAlarm": ("AWS/ApiGateway", "5xx", (("ApiId", str(ref("WebhookApi"))),)),
        "MissedWebhooksAlarm": (NAMESPACE, "MissedWebhooks", (("service", str(ref("AWS::StackName"))),)),
        "ReconcilerErrorsAlarm": (
            "AWS/Lambda",
            "Errors",
            (("FunctionName", str(ref("ReconcilerFunction"))),),
        ),
    }
    assert template["Resources"]["MissedWebhooksAlarm"]["Properties"]["Threshold"] == ref(
        "MissedWebhooksAlarmThreshold"
    )
    assert alarms["DlqMessagesAlarm"]["Threshold"] == 0
    assert alarms["DlqMessagesAlarm"]["ComparisonOperator"] == "GreaterThanThreshold"
    assert template["Resources"]["OldestMessageAgeAlarm"]["Properties"]["Threshold"] == ref(
        "OldestMessageAgeAlarmSeconds"
    )
    for name, alarm in alarms.items():
        assert alarm["AlarmActions"] == [ref("AlarmTopic")], name
        assert alarm["Period"] * alarm["EvaluationPeriods"] <= 86_400, name


def test_no_notification_alarm_is_optional_and_watches_what_ingest_emits(template):
    assert "NoNotificationsAlarm" not in _alarms(template)
    alarm = _alarms(template, NoNotificationsAlarmHours=6)["NoNotificationsAlarm"]
    assert (alarm["Namespace"], alarm["MetricName"]) == (NAMESPACE, "NotificationsReceived")
    assert alarm["Dimensions"] == [{"Name": "service", "Value": ref("AWS::StackName")}]
    assert alarm["Period"] == 3600
    assert alarm["EvaluationPeriods"] == "6"
    assert alarm["TreatMissingData"] == "breaching"  # no data at all is the case it is for
    assert alarm["ComparisonOperator"] == "LessThanThreshold"
    assert template["Parameters"]["NoNotificationsAlarmHours"]["MaxValue"] * 3600 <= 7 * 86_400


def test_alarm_topic_has_an_optional_email_subscription(template):
    assert "AlarmEmailSubscription" not in resources(template, parameter_values(template))
    created = resources(template, parameter_values(template, AlarmEmail="ops@example.com"))
    subscription = created["AlarmEmailSubscription"]["Properties"]
    assert subscription == {"TopicArn": ref("AlarmTopic"), "Protocol": "email", "Endpoint": "ops@example.com"}


# --- metrics: the template against the code ---------------------------------------------------


def test_the_collector_finds_the_documented_metrics(emitted):
    assert set(emitted) >= INGEST_METRICS, "ingest metrics missing from the code"
    assert set(emitted) >= PROCESSOR_METRICS, "processor metrics missing from the code"


def test_metrics_carry_only_the_default_service_dimension():
    assert dimension_calls() == []


def test_every_custom_metric_in_an_alarm_or_on_the_dashboard_is_emitted_by_the_code(template, emitted):
    used = [
        (f"alarm {name}", a["MetricName"], {d["Name"]: d["Value"] for d in a["Dimensions"]})
        for name, a in _alarms(template, NoNotificationsAlarmHours=1).items()
        if a["Namespace"] == NAMESPACE
    ]
    used += [
        (f"widget {m['title']!r}", m["name"], m["dimensions"])
        for m in dashboard_metrics(template)
        if m["namespace"] == NAMESPACE
    ]
    assert used
    for where, metric, dimensions in used:
        assert metric in emitted, f"{where}: {metric} is not emitted by the code"
        assert dimensions in (SERVICE_DIMENSION, {"service": ref("AWS::StackName")}), where


def test_the_dashboard_shows_every_metric_the_code_emits(template, emitted):
    shown = {m["name"] for m in dashboard_metrics(template) if m["namespace"] == NAMESPACE}
    assert set(emitted) <= shown, f"not on the dashboard: {sorted(set(emitted) - shown)}"


def test_dashboard_graphs(template):
    metrics = dashboard_metrics(template)

    def names(namespace, **dimensions):
        return {
            (m["name"], m["stat"])
            for m in metrics
            if m["namespace"] == namespace and all(m["dimensions"].get(k) == v for k, v in dimensions.items())
        }

    custom = {name for name, _ in names(NAMESPACE, service="<AWS::StackName>")}
    assert {"NotificationsReceived", "NotificationsAccepted", "NotificationsRejected"} <= custom
    assert {"NotificationsSucceeded", "NotificationsFailed", "NotificationsRetried"} <= custom
    assert {"FeedbackPosted", "FeedbackFailed", "VismaThrottled"} <= custom
    processor = names("AWS/Lambda", FunctionName="<ProcessorFunction>")
    assert {("Duration", "p50"), ("Duration", "p99"), ("Throttles", "Sum")} <= processor
    queue = {n for n, _ in names("AWS/SQS", QueueName="<NotificationsQueue.QueueName>")}
    assert {"ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage"} <= queue
    dlq = {n for n, _ in names("AWS/SQS", QueueName="<NotificationsDLQ.QueueName>")}
    assert "ApproximateNumberOfMessagesVisible" in dlq


def test_dashboard_references_exist(template):
    _, dashboard = one_of_type(template, "AWS::CloudWatch::Dashboard")
    text = dashboard["Properties"]["DashboardBody"]["Fn::Sub"]
    unconditional = {n for n, r in template["Resources"].items() if "Condition" not in r}
    for name in sub_placeholders(text):
        assert name.startswith("AWS::") or name.split(".")[0] in unconditional, name
    for widget in dashboard_body(template)["widgets"]:
        if widget["type"] == "alarm":
            for alarm in as_list(widget["properties"]["alarms"]):
                assert alarm.removeprefix("<").removesuffix(".Arn>") in unconditional, alarm
