"""Reading ``template.yaml`` for the local stack, so that the two cannot drift apart.

The template is parsed with its CloudFormation short-form tags (``!Ref``, ``!Sub``,
``!GetAtt``...), and the intrinsic functions the local stack needs are resolved against
the parameters' defaults (or overrides): ``Ref``, ``Fn::Sub``, ``Fn::FindInMap``,
``Fn::If`` with ``Conditions``, ``Fn::Equals``/``Not``/``And``/``Or``, ``Fn::Join``,
``Fn::Select``, ``Fn::Split``. A reference to a resource resolves to a
:class:`ResourceRef`, which the local stack maps onto the resources it created.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from visma_webhooks_local.stack.functions import PROJECT_ROOT

DEFAULT_TEMPLATE = PROJECT_ROOT / "template.yaml"
NO_VALUE = object()  # AWS::NoValue: the property is left out


class TemplateError(ValueError):
    """The template lacks something the local stack needs, or uses what it cannot resolve."""


class _Loader(yaml.SafeLoader):
    """YAML loader that turns CloudFormation short forms (``!Ref``, ``!GetAtt A.B``...) into long forms."""


def _intrinsic(loader: _Loader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:
        raise TemplateError(f"!{suffix}: unexpected YAML node {type(node).__name__}")
    return {name: value}


_Loader.add_multi_constructor("!", _intrinsic)


def load(path: str | Path = DEFAULT_TEMPLATE) -> dict[str, Any]:
    """The template as plain data (short-form tags turned into long forms)."""
    with open(path, encoding="utf-8") as f:
        data = yaml.load(f, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    if not isinstance(data, dict) or not isinstance(data.get("Resources"), dict):
        raise TemplateError(f"{path} is not a CloudFormation template with Resources")
    return data


@dataclass(frozen=True)
class ResourceRef:
    """``!Ref Resource`` (``attribute`` None) or ``!GetAtt Resource.Attribute``."""

    logical_id: str
    attribute: str | None = None


@dataclass
class Template:
    """A loaded template and the values its parameters take here."""

    data: dict[str, Any]
    parameters: dict[str, Any] = field(default_factory=dict)
    stack_name: str = "visma-webhooks-local"
    region: str = "eu-west-1"
    account_id: str = "123456789012"

    @classmethod
    def from_file(cls, path: str | Path = DEFAULT_TEMPLATE, **kwargs: Any) -> Template:
        """The template with each parameter at its default (the values ``sam deploy`` would take)."""
        data = load(path)
        defaults = {
            name: p["Default"] for name, p in (data.get("Parameters") or {}).items() if "Default" in p
        }
        return cls(data, defaults, **kwargs)

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return self.data["Resources"]

    def of_type(self, *types: str) -> dict[str, dict[str, Any]]:
        """The resources of the given types, by logical id, in template order."""
        return {name: r for name, r in self.resources.items() if r.get("Type") in types}

    def prop(self, logical_id: str, *keys: str, default: Any = None) -> Any:
        """One property of a resource (``prop("Queue", "RedrivePolicy", "maxReceiveCount")``), resolved.

        Only that subtree is resolved, so that properties the local stack does not use
        may hold what it cannot resolve.
        """
        resource = self.resources.get(logical_id)
        if resource is None:
            raise TemplateError(f"the template has no resource {logical_id}")
        return self._at(resource.get("Properties") or {}, keys, default)

    def global_prop(self, section: str, *keys: str, default: Any = None) -> Any:
        """A property of the template's ``Globals`` section (``global_prop("Function", "Timeout")``)."""
        return self._at((self.data.get("Globals") or {}).get(section) or {}, keys, default)

    def _at(self, node: Any, keys: tuple[str, ...], default: Any) -> Any:
        for key in keys:
            if _is_intrinsic(node):
                node = self.resolve(node)
            if not isinstance(node, dict) or key not in node:
                return default
            node = node[key]
        value = self.resolve(node)
        return default if value is NO_VALUE else value

    # -- intrinsic functions --------------------------------------------------------------

    def pseudo(self, name: str) -> Any:
        values = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::StackName": self.stack_name,
            "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{self.account_id}:stack/{self.stack_name}/local",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": NO_VALUE,
        }
        if name not in values:
            raise TemplateError(f"unknown pseudo parameter {name}")
        return values[name]

    def ref(self, name: str) -> Any:
        if name.startswith("AWS::"):
            return self.pseudo(name)
        if name in self.parameters:
            return self.parameters[name]
        if name in self.resources:
            return ResourceRef(name)
        raise TemplateError(f"!Ref {name}: no such parameter or resource")

    def condition(self, name: str) -> bool:
        conditions = self.data.get("Conditions") or {}
        if name not in conditions:
            raise TemplateError(f"no condition {name}")
        return bool(self.resolve(conditions[name]))

    def resolve(self, value: Any) -> Any:
        """``value`` with every intrinsic function the local stack understands evaluated."""
        if isinstance(value, list):
            items = [self.resolve(v) for v in value]
            return [v for v in items if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Condition" and isinstance(arg, str):
                return self.condition(arg)
            if key.startswith("Fn::"):
                return self._function(key, arg)
        resolved = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not NO_VALUE}

    def _function(self, name: str, arg: Any) -> Any:
        evaluate = _FUNCTIONS.get(name)
        if evaluate is None:
            raise TemplateError(f"{name} is not supported by the local stack")
        return evaluate(self, arg)

    def _get_att(self, arg: Any) -> ResourceRef:
        logical_id, attribute = arg if isinstance(arg, list) else str(arg).split(".", 1)
        if logical_id not in self.resources:
            raise TemplateError(f"!GetAtt {logical_id}.{attribute}: no such resource")
        return ResourceRef(logical_id, attribute)

    def _find_in_map(self, arg: Any) -> Any:
        mapping, top, second = (self.resolve(a) for a in arg[:3])
        try:
            return self.data["Mappings"][mapping][top][second]
        except (KeyError, TypeError):
            if len(arg) > 3 and isinstance(arg[3], dict) and "DefaultValue" in arg[3]:
                return self.resolve(arg[3]["DefaultValue"])
            raise TemplateError(f"!FindInMap {mapping}/{top}/{second}: no such entry") from None

    def _if(self, arg: Any) -> Any:
        condition, when_true, when_false = arg
        return self.resolve(when_true if self.condition(condition) else when_false)

    def _equals(self, arg: Any) -> bool:
        left, right = (self.resolve(a) for a in arg)
        return str(left) == str(right)

    def _not(self, arg: Any) -> bool:
        return not self._truth(arg[0])

    def _and(self, arg: Any) -> bool:
        return all(self._truth(a) for a in arg)

    def _or(self, arg: Any) -> bool:
        return any(self._truth(a) for a in arg)

    def _join(self, arg: Any) -> str:
        separator, items = arg
        parts = self.resolve(items)
        if any(isinstance(p, ResourceRef) for p in parts):
            raise TemplateError("!Join over a resource reference cannot be resolved locally")
        return str(separator).join(str(p) for p in parts)

    def _select(self, arg: Any) -> Any:
        index, items = self.resolve(arg[0]), self.resolve(arg[1])
        return items[int(index)]

    def _split(self, arg: Any) -> list[str]:
        separator, text = arg[0], self.resolve(arg[1])
        return str(text).split(separator)

    def _truth(self, value: Any) -> bool:
        if isinstance(value, dict) and set(value) == {"Condition"}:
            return self.condition(value["Condition"])
        return bool(self.resolve(value))

    def _sub(self, arg: Any) -> Any:
        if isinstance(arg, list):
            text, variables = arg[0], {k: self.resolve(v) for k, v in (arg[1] or {}).items()}
        else:
            text, variables = arg, {}
        refs: list[ResourceRef] = []

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1).strip()
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                value = variables[name]
            elif "." in name and not name.startswith("AWS::"):
                logical_id, attribute = name.split(".", 1)
                value = ResourceRef(logical_id, attribute)
            else:
                value = self.ref(name)
            if isinstance(value, ResourceRef):
                refs.append(value)
                return match.group(0)
            return str(value)

        result = re.sub(r"\$\{([^}]+)\}", substitute, text)
        if refs:
            if len(refs) == 1 and re.fullmatch(r"\$\{[^}]+\}", text):
                return refs[0]  # "${Queue.Arn}" alone is just the reference
            raise TemplateError(f"!Sub {text!r} names resources; it cannot be resolved locally")
        return result


_FUNCTIONS: dict[str, Callable[[Template, Any], Any]] = {
    "Fn::GetAtt": Template._get_att,
    "Fn::Sub": Template._sub,
    "Fn::FindInMap": Template._find_in_map,
    "Fn::If": Template._if,
    "Fn::Equals": Template._equals,
    "Fn::Not": Template._not,
    "Fn::And": Template._and,
    "Fn::Or": Template._or,
    "Fn::Join": Template._join,
    "Fn::Select": Template._select,
    "Fn::Split": Template._split,
}


def _is_intrinsic(node: Any) -> bool:
    if not isinstance(node, dict) or len(node) != 1:
        return False
    key = next(iter(node))
    return key in ("Ref", "Condition") or key.startswith("Fn::")
