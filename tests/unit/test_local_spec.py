"""The local stack's reading of ``template.yaml``: what it builds, and what it refuses."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from tests.template.cfn import cfn, parameter_values, resources
from visma_webhooks_local.stack.spec import StackSpec
from visma_webhooks_local.stack.template import DEFAULT_TEMPLATE, ResourceRef, Template, TemplateError, load


@pytest.fixture(scope="module")
def deployed():
    """The CloudFormation ``sam deploy`` would create with the default parameters (samtranslator)."""
    template = cfn()
    return resources(template, parameter_values(template))


def test_the_local_stack_builds_what_the_deployed_stack_has(deployed):
    spec = StackSpec.from_template(Template.from_file())
    queue = deployed[spec.queue.logical_id]["Properties"]
    table = deployed[spec.table.logical_id]["Properties"]

    assert spec.max_receive_count == int(queue["RedrivePolicy"]["maxReceiveCount"])
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": [spec.dlq.logical_id, "Arn"]}
    assert spec.queue.attributes["VisibilityTimeout"] == str(queue["VisibilityTimeout"])
    assert spec.dlq.attributes["MessageRetentionPeriod"] == str(
        deployed[spec.dlq.logical_id]["Properties"]["MessageRetentionPeriod"]
    )
    assert spec.table.ttl_attribute == table["TimeToLiveSpecification"]["AttributeName"]
    assert spec.table.key_schema == table["KeySchema"]
    processor = deployed[spec.processor.logical_id]["Properties"]
    assert spec.processor.timeout == float(processor["Timeout"])
    [mapping] = [r["Properties"] for r in deployed.values() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    assert spec.mapping.batch_size == mapping["BatchSize"]
    assert spec.mapping.batching_window == mapping["MaximumBatchingWindowInSeconds"]
    assert spec.processor.environment["IDEMPOTENCY_TABLE"] == ResourceRef(spec.table.logical_id)
    assert deployed[spec.webhook_secret]["Type"] == "AWS::SecretsManager::Secret"
    assert deployed[spec.visma_secret]["Type"] == "AWS::SecretsManager::Secret"


def test_local_overrides_win(deployed):
    spec = StackSpec.from_template(
        Template.from_file(), max_receive_count=2, visibility_timeout=7, processor_timeout=4
    )
    assert (spec.max_receive_count, spec.queue.attributes["VisibilityTimeout"], spec.processor.timeout) == (
        2,
        "7",
        4.0,
    )


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "template.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def edited(change) -> dict:
    data = copy.deepcopy(load(DEFAULT_TEMPLATE))
    change(data)
    return data


def no_redrive(data):
    for resource in data["Resources"].values():
        resource.get("Properties", {}).pop("RedrivePolicy", None)


def table_not_referenced(data):
    data["Resources"]["ProcessorFunction"]["Properties"]["Environment"]["Variables"]["IDEMPOTENCY_TABLE"] = (
        "t"
    )


def no_key_schema(data):
    data["Resources"]["IdempotencyTable"]["Properties"].pop("KeySchema")


def no_processor(data):
    data["Resources"] = {k: v for k, v in data["Resources"].items() if k != "ProcessorFunction"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (no_redrive, "no SQS queue with a RedrivePolicy"),
        (table_not_referenced, "IDEMPOTENCY_TABLE does not reference an AWS::DynamoDB::Table"),
        (no_key_schema, "IdempotencyTable has no KeySchema"),
        (no_processor, "the template has no ProcessorFunction"),
    ],
)
def test_a_template_without_what_the_local_stack_needs_is_refused(tmp_path, change, message):
    with pytest.raises(TemplateError, match=message):
        StackSpec.from_template(Template.from_file(write(tmp_path, edited(change))))


def test_a_file_that_is_not_a_template_is_refused(tmp_path):
    path = tmp_path / "template.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(TemplateError, match="not a CloudFormation template"):
        Template.from_file(path)


@pytest.fixture
def template():
    return Template(
        {
            "Parameters": {"Env": {"Default": "dev"}},
            "Conditions": {"IsProd": {"Fn::Equals": [{"Ref": "Env"}, "prod"]}},
            "Mappings": {"Sizes": {"dev": {"Memory": 128}}},
            "Resources": {"Queue": {"Type": "AWS::SQS::Queue"}},
        },
        {"Env": "dev"},
    )


@pytest.mark.parametrize(
    ("node", "value"),
    [
        ({"Ref": "Env"}, "dev"),
        ({"Ref": "AWS::Region"}, "eu-west-1"),
        ({"Fn::Sub": "${AWS::StackName}-${Env}"}, "visma-webhooks-local-dev"),
        ({"Fn::Sub": "${Queue.Arn}"}, ResourceRef("Queue", "Arn")),
        ({"Fn::GetAtt": ["Queue", "Arn"]}, ResourceRef("Queue", "Arn")),
        ({"Fn::If": ["IsProd", 1, 2]}, 2),
        ({"Fn::FindInMap": ["Sizes", {"Ref": "Env"}, "Memory"]}, 128),
        ({"Fn::Join": ["-", ["a", {"Ref": "Env"}]]}, "a-dev"),
        ({"Fn::Select": [1, {"Fn::Split": [",", "x,y"]}]}, "y"),
        ({"Fn::Not": [{"Condition": "IsProd"}]}, True),
        ([1, {"Fn::If": ["IsProd", 2, {"Ref": "AWS::NoValue"}]}], [1]),
    ],
)
def test_intrinsic_functions(template, node, value):
    assert template.resolve(node) == value


@pytest.mark.parametrize(
    ("node", "message"),
    [
        ({"Ref": "Nothing"}, "no such parameter or resource"),
        ({"Ref": "AWS::Unknown"}, "unknown pseudo parameter"),
        ({"Fn::GetAtt": ["Nothing", "Arn"]}, "no such resource"),
        ({"Fn::Sub": "arn:${Queue.Arn}/x"}, "names resources"),
        ({"Fn::Join": ["-", [{"Ref": "Queue"}]]}, "cannot be resolved locally"),
        ({"Fn::FindInMap": ["Sizes", "prod", "Memory"]}, "no such entry"),
        ({"Fn::If": ["Nowhere", 1, 2]}, "no condition Nowhere"),
        ({"Fn::ImportValue": "x"}, "not supported by the local stack"),
    ],
)
def test_what_cannot_be_resolved_locally_is_a_clear_error(template, node, message):
    with pytest.raises(TemplateError, match=message):
        template.resolve(node)
