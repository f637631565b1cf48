"""The SAM template transformed offline, and helpers to read the CloudFormation it becomes.

The transform is samtranslator's own (what ``sam deploy`` runs in the cloud), fed with a
managed-policy loader that answers from a local dict: no network, no AWS call. Conditions
stay in the output as ``Fn::If``; :func:`resolve` evaluates them for a given set of
parameter values, so one transform serves every combination of parameters.
"""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import boto3
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

from visma_webhooks_local.stack.template import load

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
REGION = "eu-west-1"
NO_VALUE = object()

# What samtranslator may ask for when it generates a role; the template's roles are its own.
MANAGED_POLICIES = {
    "AWSLambdaBasicExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "AWSLambdaSQSQueueExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole",
    "AWSXrayWriteOnlyAccess": "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
}


class LocalPolicyLoader:
    """samtranslator's ManagedPolicyLoader, answering from :data:`MANAGED_POLICIES`."""

    def __init__(self) -> None:
        self.calls = 0

    def load(self) -> dict[str, str]:
        self.calls += 1
        return dict(MANAGED_POLICIES)


@cache
def sam_template() -> dict[str, Any]:
    return load(TEMPLATE)


@cache
def _transformed() -> tuple[dict[str, Any], int]:
    template = copy.deepcopy(sam_template())
    for resource in template["Resources"].values():
        properties = resource.get("Properties") or {}
        for key in ("CodeUri", "ContentUri"):  # what `sam package` does to local paths
            if isinstance(properties.get(key), str):
                properties[key] = f"s3://artifacts/{key.lower()}.zip"
    loader = LocalPolicyLoader()
    # what samtranslator.translator.transform.transform does, with the region given explicitly
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=REGION))
    output = translator.translate(template, parameter_values={}, get_managed_policy_map=loader.load)
    return output, loader.calls


def cfn() -> dict[str, Any]:
    """The CloudFormation template (a fresh copy)."""
    return copy.deepcopy(_transformed()[0])


def policy_loader_calls() -> int:
    return _transformed()[1]


def of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def one_of_type(template: dict[str, Any], kind: str) -> tuple[str, dict[str, Any]]:
    found = of_type(template, kind)
    assert len(found) == 1, f"expected one {kind}, found {sorted(found)}"
    return next(iter(found.items()))


def parameter_values(template: dict[str, Any], **overrides: Any) -> dict[str, str]:
    """Every parameter's value as CloudFormation passes it (a string): defaults, then overrides."""
    values = {name: str(p["Default"]) for name, p in template["Parameters"].items() if "Default" in p}
    unknown = set(overrides) - set(template["Parameters"])
    assert not unknown, f"no such parameters: {unknown}"
    values.update({name: str(value) for name, value in overrides.items()})
    return values


def condition(template: dict[str, Any], name: str, params: dict[str, str]) -> bool:
    return bool(_evaluate(template, template["Conditions"][name], params))


def _evaluate(template: dict[str, Any], node: Any, params: dict[str, str]) -> Any:
    if isinstance(node, dict) and len(node) == 1:
        ((key, arg),) = node.items()
        if key == "Condition":
            return condition(template, arg, params)
        if key == "Fn::Equals":
            left, right = (resolve(template, a, params) for a in arg)
            return str(left) == str(right)
        if key == "Fn::Not":
            return not _evaluate(template, arg[0], params)
        if key == "Fn::And":
            return all(_evaluate(template, a, params) for a in arg)
        if key == "Fn::Or":
            return any(_evaluate(template, a, params) for a in arg)
    return resolve(template, node, params)


def resolve(template: dict[str, Any], node: Any, params: dict[str, str]) -> Any:
    """``node`` with ``Fn::If``, ``Fn::FindInMap``, ``AWS::NoValue`` and parameter ``Ref`` evaluated.

    References to resources and other pseudo parameters, ``Fn::GetAtt`` and ``Fn::Sub`` are
    kept as they are, so that they can be compared with what they should name.
    """
    if isinstance(node, list):
        resolved = [resolve(template, item, params) for item in node]
        return [item for item in resolved if item is not NO_VALUE]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        ((key, arg),) = node.items()
        if key == "Ref" and arg == "AWS::NoValue":
            return NO_VALUE
        if key == "Ref" and arg in params:
            return params[arg]
        if key == "Fn::If":
            name, when_true, when_false = arg
            return resolve(template, when_true if condition(template, name, params) else when_false, params)
        if key == "Fn::FindInMap":
            mapping, top, second = (resolve(template, a, params) for a in arg)
            return template["Mappings"][mapping][str(top)][second]
    items = {k: resolve(template, v, params) for k, v in node.items()}
    return {k: v for k, v in items.items() if v is not NO_VALUE}


def resources(template: dict[str, Any], params: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The resources that exist with these parameter values, with their properties resolved."""
    kept = {}
    for name, resource in template["Resources"].items():
        if "Condition" in resource and not condition(template, resource["Condition"], params):
            continue
        kept[name] = {**resource, "Properties": resolve(template, resource.get("Properties") or {}, params)}
    return kept


def ref(name: str) -> dict[str, str]:
    return {"Ref": name}


def get_att(name: str, attribute: str) -> dict[str, list[str]]:
    return {"Fn::GetAtt": [name, attribute]}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def allowed(role: dict[str, Any]) -> set[tuple[str, str]]:
    """The (action, resource) pairs a role's inline policies allow; resources as canonical JSON."""
    pairs = set()
    for policy in role["Properties"].get("Policies", []):
        for statement in policy["PolicyDocument"]["Statement"]:
            assert statement["Effect"] == "Allow", statement
            assert "NotAction" not in statement, statement
            assert "NotResource" not in statement, statement
            for action in as_list(statement["Action"]):
                for resource in as_list(statement["Resource"]):
                    pairs.add((action, canonical(resource)))
    return pairs


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def sub_placeholders(text: str) -> list[str]:
    """The ``${...}`` variables of an ``Fn::Sub`` string (``${!Literal}`` excluded)."""
    return [name for name in re.findall(r"\$\{([^}]+)\}", text) if not name.startswith("!")]


def dashboard_body(template: dict[str, Any]) -> dict[str, Any]:
    """The dashboard's JSON body, each ``${X}`` of its ``Fn::Sub`` replaced by ``<X>``."""
    _, dashboard = one_of_type(template, "AWS::CloudWatch::Dashboard")
    body = dashboard["Properties"]["DashboardBody"]
    text = body["Fn::Sub"] if isinstance(body, dict) else body
    assert isinstance(text, str), "the dashboard body is one Fn::Sub string"
    return json.loads(re.sub(r"\$\{([^}!]+)\}", r"<\1>", text))


def dashboard_metrics(template: dict[str, Any]) -> list[dict[str, Any]]:
    """Every metric of every dashboard widget: namespace, name, dimensions, options, widget title."""
    found = []
    for widget in dashboard_body(template)["widgets"]:
        if widget["type"] != "metric":
            continue
        properties = widget["properties"]
        for row in properties["metrics"]:
            options = row[-1] if isinstance(row[-1], dict) else {}
            fields = row[:-1] if options else row
            assert not {".", "..."} & set(fields), f"write metric rows out in full: {row}"
            namespace, name, *pairs = fields
            assert len(pairs) % 2 == 0, row
            found.append(
                {
                    "namespace": namespace,
                    "name": name,
                    "dimensions": dict(zip(pairs[::2], pairs[1::2], strict=True)),
                    "stat": options.get("stat", properties.get("stat")),
                    "title": properties["title"],
                }
            )
    return found
