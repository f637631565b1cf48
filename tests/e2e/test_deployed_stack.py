"""``replay``, ``status`` and ``inspect`` against a deployed stack: ``--stack-name`` and CloudFormation.

The "AWS account" is moto's server on loopback, reached as the CLI reaches AWS: through the
standard ``AWS_ENDPOINT_URL`` and credentials variables. A CloudFormation stack holds the
queue, the DLQ (with the redrive policy) and the table, and its outputs name the queues
as ``template.yaml``'s do.
"""

from __future__ import annotations

import json
import os
import subprocess

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.e2e.conftest import COLUMNS, cli, legacy_item, new_id
from visma_webhooks.domain.parsing import parse_delivery
from visma_webhooks.domain.queueing import notification_message
from visma_webhooks.domain.resources import ResourceRules

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e-deployed")]

REGION = "eu-west-1"
STACK = "visma-webhooks-prod"
TEMPLATE = {
    "AWSTemplateFormatVersion": "2010-09-09",
    "Resources": {
        "NotificationsDLQ": {"Type": "AWS::SQS::Queue", "Properties": {"MessageRetentionPeriod": 1209600}},
        "NotificationsQueue": {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "VisibilityTimeout": 180,
                "RedrivePolicy": {
                    "deadLetterTargetArn": {"Fn::GetAtt": ["NotificationsDLQ", "Arn"]},
                    "maxReceiveCount": 5,
                },
            },
        },
        "IdempotencyTable": {
            "Type": "AWS::DynamoDB::Table",
            "Properties": {
                "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
                "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
            },
        },
    },
    "Outputs": {
        "QueueUrl": {"Value": {"Ref": "NotificationsQueue"}},
        "DlqUrl": {"Value": {"Ref": "NotificationsDLQ"}},
    },
}


@pytest.fixture(scope="module")
def account():
    """moto server with the stack deployed; yields the environment a user's shell would have."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",  # --region must win over it
        "COLUMNS": COLUMNS,
    }
    env.pop("AWS_PROFILE", None)
    session = boto3.session.Session(
        region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    cfn = session.client("cloudformation", endpoint_url=env["AWS_ENDPOINT_URL"])
    cfn.create_stack(StackName=STACK, TemplateBody=json.dumps(TEMPLATE))
    outputs = {
        o["OutputKey"]: o["OutputValue"] for o in cfn.describe_stacks(StackName=STACK)["Stacks"][0]["Outputs"]
    }
    sqs = session.client("sqs", endpoint_url=env["AWS_ENDPOINT_URL"])
    yield env, sqs, outputs
    server.stop()


def run(env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(  # noqa: S603
        [*cli(), *args, "--stack-name", STACK, "--region", REGION],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_replay_status_and_inspect_find_the_queues_through_the_stack_outputs(account):
    env, sqs, outputs = account
    nid = new_id()
    body = json.dumps([legacy_item(nid, "customer/10001")]).encode()
    [notification] = parse_delivery(body, {}, ResourceRules()).notifications
    message = notification_message(0, notification)
    attributes = {k: {"DataType": "String", "StringValue": v} for k, v in message.attributes.items()}
    sqs.send_message(QueueUrl=outputs["DlqUrl"], MessageBody=message.body, MessageAttributes=attributes)

    status = run(env, "status", "--json")
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert shown["target"] == f"stack {STACK} ({REGION})"
    assert (shown["queue"]["visible"], shown["dlq"]["visible"]) == (0, 1)

    found = run(env, "inspect", nid)
    assert found.returncode == 0, found.stderr
    assert "in the DLQ" in found.stdout

    dry = run(env, "replay", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "dry run: nothing moved" in dry.stdout
    assert "would move" in dry.stdout
    assert json.loads(run(env, "status", "--json").stdout)["dlq"]["visible"] == 1

    moved = run(env, "replay")
    assert moved.returncode == 0, moved.stderr
    [copy] = sqs.receive_message(
        QueueUrl=outputs["QueueUrl"], MessageAttributeNames=["All"], VisibilityTimeout=0
    )["Messages"]
    assert copy["Body"] == message.body  # not rewritten
    assert {k: v["StringValue"] for k, v in copy["MessageAttributes"].items()} == message.attributes
    assert "Messages" not in sqs.receive_message(QueueUrl=outputs["DlqUrl"], WaitTimeSeconds=0)

    peeked = run(env, "inspect", nid, "--peek-queue", "--json")
    assert json.loads(peeked.stdout)["where"] == "in the queue, waiting to be processed"


def test_an_unknown_stack_is_a_clear_error(account):
    env, _, _ = account
    result = subprocess.run(  # noqa: S603
        [*cli(), "status", "--stack-name", "no-such-stack", "--region", REGION],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "cannot read stack no-such-stack" in result.stderr
    assert "Traceback" not in result.stderr
