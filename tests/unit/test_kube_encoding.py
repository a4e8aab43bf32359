"""Apply patches are YAML on the server side: the body frugal sends must parse as YAML too."""

from __future__ import annotations

import json

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from frugal.kube import resource_path, yaml_safe_json

# Lone surrogates cannot be encoded as UTF-8 at all; everything else must survive.
text = st.text(st.characters(blacklist_categories=["Cs"]))


# Numbers are left out: PyYAML follows YAML 1.1 and reads 1e-05 as a string; Go does not.
@given(st.dictionaries(text, st.one_of(text, st.integers(), st.booleans())))
def test_body_is_json_and_yaml_with_the_same_meaning(obj: dict) -> None:
    body = yaml_safe_json(obj)
    assert json.loads(body) == obj
    assert yaml.safe_load(body.decode("utf-8")) == obj


def test_resource_paths() -> None:
    assert resource_path("apps/v1", "Deployment", "ns", "x") == (
        "/apis/apps/v1/namespaces/ns/deployments/x"
    )
    assert resource_path("v1", "Service", "ns") == "/api/v1/namespaces/ns/services"
    assert resource_path("v1", "Node", None, "n1") == "/api/v1/nodes/n1"
    with pytest.raises(ValueError, match="namespaced"):
        resource_path("v1", "Service")
    with pytest.raises(KeyError, match="does not know"):
        resource_path("example.com/v1", "Widget", "ns")
