"""samconfig.toml: the default, dev and prod environments, checked against the template's parameters."""

from __future__ import annotations

import re
import tomllib

import pytest

from tests.template.cfn import ROOT, sam_template

ENVIRONMENTS = ("default", "dev", "prod")


@pytest.fixture(scope="module")
def config():
    with open(ROOT / "samconfig.toml", "rb") as f:
        return tomllib.load(f)


def _overrides(deploy: dict) -> dict[str, str]:
    items = deploy.get("parameter_overrides", [])
    items = items if isinstance(items, list) else items.split()
    return dict(item.split("=", 1) for item in items)


def test_environments_deploy_distinct_stacks(config):
    assert set(ENVIRONMENTS) <= set(config)
    names = [config[env]["global"]["parameters"]["stack_name"] for env in ENVIRONMENTS]
    assert len(set(names)) == len(names)
    for name in names:
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{0,127}", name), name  # also a valid dashboard name


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_deploy_settings(config, env):
    deploy = config[env]["deploy"]["parameters"]
    assert deploy["capabilities"] == "CAPABILITY_IAM"  # the roles are unnamed
    assert deploy["resolve_s3"] is True
    if env == "prod":
        assert deploy["confirm_changeset"] is True


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_parameter_overrides_are_valid_template_parameters(config, env):
    parameters = sam_template()["Parameters"]
    for name, value in _overrides(config[env]["deploy"]["parameters"]).items():
        assert name in parameters, f"{env}: the template has no parameter {name}"
        spec = parameters[name]
        if "AllowedValues" in spec:
            assert value in [str(v) for v in spec["AllowedValues"]], (env, name, value)
        if spec["Type"] == "Number":
            number = float(value)
            assert number >= spec.get("MinValue", number), (env, name)
            assert number <= spec.get("MaxValue", number), (env, name)
        if "AllowedPattern" in spec:
            assert re.fullmatch(spec["AllowedPattern"], value), (env, name, value)


def test_prod_keeps_the_dispatcher_allow_list(config):
    assert _overrides(config["prod"]["deploy"]["parameters"]).get("RestrictSourceIps", "true") == "true"
