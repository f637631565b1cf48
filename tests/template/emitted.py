"""The metric names the code emits, found by reading its source with ``ast``.

Every ``add_metric(name=...)`` call in ``layers/`` and ``functions/`` is followed back to
the strings it can receive:

- a string constant, or either branch of a conditional expression;
- ``MAPPING[key]``, where ``MAPPING`` is a module-level dict literal: its values;
- a loop variable over ``something.ATTR.items()`` (or ``.keys()``, or the mapping itself):
  the keys of every dict literal the code binds to ``ATTR``, whether as a keyword argument
  ``ATTR={...}``, a positional argument in the place of a dataclass field named ``ATTR``,
  an assignment ``x.ATTR = {...}`` or ``x.ATTR["Name"] = ...``.

A call whose name cannot be followed back raises :class:`Unresolved`, so that a new way of
emitting metrics makes the test fail instead of going unchecked.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.template.cfn import ROOT

SOURCES = (ROOT / "layers", ROOT / "functions")
DYNAMIC = "\0dynamic key at "


class Unresolved(AssertionError):
    """An ``add_metric`` call whose metric name the collector cannot follow back to strings."""


@dataclass
class _Module:
    path: Path
    tree: ast.Module
    constants: dict[str, ast.expr] = field(default_factory=dict)
    parents: dict[ast.AST, ast.AST] = field(default_factory=dict)


def _modules() -> Iterator[_Module]:
    for root in SOURCES:
        for path in sorted(root.rglob("*.py")):
            if "__pycache__" in path.parts or any(p.endswith(".egg-info") for p in path.parts):
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            module = _Module(path, tree, _constants(tree))
            for parent in ast.walk(tree):
                for child in ast.iter_child_nodes(parent):
                    module.parents[child] = parent
            yield module


def _constants(tree: ast.Module) -> dict[str, ast.expr]:
    """Module-level names bound to an expression (``NAME = ...`` or ``NAME: T = ...``)."""
    constants: dict[str, ast.expr] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    constants[target.id] = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value:
            constants[node.target.id] = node.value
    return constants


def _dataclass_fields(modules: list[_Module]) -> dict[str, list[str]]:
    """Field names, in order, of every class declared with annotated attributes."""
    fields: dict[str, list[str]] = {}
    for module in modules:
        for node in ast.walk(module.tree):
            if isinstance(node, ast.ClassDef):
                names = [
                    s.target.id
                    for s in node.body
                    if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
                ]
                if names:
                    fields[node.name] = names
    return fields


def _callee(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def _dict_keys(node: ast.Dict, where: str) -> set[str]:
    """The dict literal's keys; a key that is not a string constant is kept as a marker."""
    return {
        key.value if isinstance(key, ast.Constant) and isinstance(key.value, str) else f"{DYNAMIC}{where}"
        for key in node.keys
    }


def _fed_keys(modules: list[_Module]) -> dict[str, set[str]]:
    """Attribute/argument name → keys of the dict literals bound to it anywhere in the code."""
    fields = _dataclass_fields(modules)
    fed: dict[str, set[str]] = defaultdict(set)
    for module in modules:
        for node in ast.walk(module.tree):
            where = f"{module.path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Call):
                _call_keys(node, fields, where, fed)
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                _assigned_keys(node, where, fed)
    return fed


def _call_keys(call: ast.Call, fields: dict[str, list[str]], where: str, fed: dict[str, set[str]]) -> None:
    """Dict literals passed by keyword, or by position to a dataclass's fields."""
    for keyword in call.keywords:
        if keyword.arg and isinstance(keyword.value, ast.Dict):
            fed[keyword.arg] |= _dict_keys(keyword.value, where)
    names = fields.get(_callee(call) or "", [])
    for index, arg in enumerate(call.args[: len(names)]):
        if isinstance(arg, ast.Dict):
            fed[names[index]] |= _dict_keys(arg, where)


def _assigned_keys(node: ast.Assign | ast.AnnAssign, where: str, fed: dict[str, set[str]]) -> None:
    """``x.attr = {...}`` and ``x.attr["key"] = ...``."""
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    for target in targets:
        if isinstance(target, ast.Attribute) and isinstance(node.value, ast.Dict):
            fed[target.attr] |= _dict_keys(node.value, where)
        elif (
            isinstance(target, ast.Subscript)
            and isinstance(target.value, ast.Attribute)
            and isinstance(target.slice, ast.Constant)
            and isinstance(target.slice.value, str)
        ):
            fed[target.value.attr].add(target.slice.value)


def _iterated_mapping(loop: ast.For | ast.comprehension, variable: str) -> str | None:
    """The attribute name iterated by ``for variable[, ...] in x.ATTR.items()`` (or keys/itself)."""
    target = loop.target
    if isinstance(target, ast.Tuple):
        if not (target.elts and isinstance(target.elts[0], ast.Name) and target.elts[0].id == variable):
            return None
    elif not (isinstance(target, ast.Name) and target.id == variable):
        return None
    source = loop.iter
    if isinstance(source, ast.Call) and isinstance(source.func, ast.Attribute):
        if source.func.attr not in ("items", "keys"):
            return None
        source = source.func.value
    if isinstance(source, ast.Attribute):
        return source.attr
    if isinstance(source, ast.Name):
        return source.id
    return None


def _names(node: ast.expr, module: _Module, call: ast.Call, fed: dict[str, set[str]], where: str) -> set[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.IfExp):
        return _names(node.body, module, call, fed, where) | _names(node.orelse, module, call, fed, where)
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
        mapping = module.constants.get(node.value.id)
        if isinstance(mapping, ast.Dict):
            return set().union(*(_names(v, module, call, fed, where) for v in mapping.values))
    if isinstance(node, ast.Name):
        if node.id in module.constants:
            return _names(module.constants[node.id], module, call, fed, where)
        keys = _loop_keys(node.id, module, call, fed, where)
        if keys is not None:
            return keys
    raise Unresolved(f"{where}: cannot follow the metric name {ast.unparse(node)!r} back to strings")


def _loop_keys(
    variable: str, module: _Module, call: ast.Call, fed: dict[str, set[str]], where: str
) -> set[str] | None:
    """The keys of the mapping that an enclosing loop over ``variable`` iterates, if any."""
    scope: ast.AST | None = call
    while scope is not None:
        loops = [scope] if isinstance(scope, ast.For) else []
        loops += getattr(scope, "generators", [])
        for loop in loops:
            attribute = _iterated_mapping(loop, variable)
            if attribute is not None:
                keys = fed.get(attribute) or set()
                if not keys:
                    raise Unresolved(f"{where}: no dict literal is ever bound to {attribute!r}")
                dynamic = sorted(k.removeprefix(DYNAMIC) for k in keys if k.startswith(DYNAMIC))
                if dynamic:
                    raise Unresolved(f"{where}: {attribute!r} gets dict keys that are not strings: {dynamic}")
                return keys
        scope = module.parents.get(scope)
    return None


def _metric_calls() -> Iterator[tuple[_Module, ast.Call, list[_Module]]]:
    modules = list(_modules())
    for module in modules:
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Call) and _callee(node) == "add_metric":
                yield module, node, modules


def emitted_metrics() -> dict[str, set[str]]:
    """Metric name → the places (``path:line``) that emit it."""
    found: dict[str, set[str]] = defaultdict(set)
    fed: dict[str, set[str]] | None = None
    for module, call, modules in _metric_calls():
        if fed is None:
            fed = _fed_keys(modules)
        where = f"{module.path.relative_to(ROOT)}:{call.lineno}"
        name = next((k.value for k in call.keywords if k.arg == "name"), call.args[0] if call.args else None)
        if name is None:
            raise Unresolved(f"{where}: add_metric without a name")
        for metric in _names(name, module, call, fed, where):
            found[metric].add(where)
    return dict(found)


def dimension_calls() -> list[str]:
    """Places that add dimensions or change the namespace/service beyond the environment's."""
    places = []
    for module in _modules():
        for node in ast.walk(module.tree):
            if not isinstance(node, ast.Call):
                continue
            callee = _callee(node)
            where = f"{module.path.relative_to(ROOT)}:{node.lineno}"
            if callee in ("add_dimension", "set_default_dimensions"):
                places.append(f"{where}: {callee}")
            elif callee in ("Metrics", "EphemeralMetrics", "single_metric") and any(
                k.arg in ("namespace", "service", "default_dimensions") for k in node.keywords
            ):
                places.append(f"{where}: {callee} with its own namespace, service or dimensions")
    return places
