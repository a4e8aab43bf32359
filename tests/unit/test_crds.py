"""The CRD YAML in crds/ is exactly what the API models generate, and documents every field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from frugal.api.crd import KINDS, all_crds
from frugal.api.schema import SchemaError, structural_schema
from frugal.cli import render_crd_files

CRDS = Path(__file__).resolve().parents[2] / "crds"


def test_crds_folder_matches_the_models() -> None:
    files = render_crd_files()
    on_disk = {p.name: p.read_text() for p in CRDS.glob("frugal.dev_*.yaml")}
    assert on_disk.keys() == files.keys(), "run `make crds`"
    for name, text in files.items():
        assert on_disk[name] == text, f"{name} is stale: run `make crds`"


def _walk(node: dict[str, Any], path: str):
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from _walk(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}.*")


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_every_field_is_typed_and_documented(kind) -> None:
    schema = all_crds()[f"frugal.dev_{kind.plural}.yaml"]["spec"]["versions"][0]["schema"]
    root = schema["openAPIV3Schema"]
    for path, node in _walk(root["properties"]["spec"], "spec"):
        assert node.get("type") or node.get("x-kubernetes-int-or-string"), f"{path} has no type"
        if path != "spec" and not path.endswith(("[]", ".*")):
            assert node.get("description"), f"{path} has no description (kubectl explain)"
    for path, node in _walk(root["properties"]["status"], "status"):
        assert node.get("type") or node.get("x-kubernetes-int-or-string"), f"{path} has no type"


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_status_keeps_kopf_state(kind) -> None:
    root = all_crds()[f"frugal.dev_{kind.plural}.yaml"]["spec"]["versions"][0]["schema"]
    status = root["openAPIV3Schema"]["properties"]["status"]
    assert status["x-kubernetes-preserve-unknown-fields"] is True


def test_crd_names_and_printer_columns() -> None:
    docs = {d["spec"]["names"]["kind"]: d["spec"] for d in all_crds().values()}
    assert {k: s["names"]["shortNames"] for k, s in docs.items()} == {
        "InferenceEndpoint": ["ie"],
        "RoutingPolicy": ["rp"],
        "CachePolicy": ["cpol"],
    }
    for spec in docs.values():
        assert spec["names"]["categories"] == ["frugal"]
        assert spec["versions"][0]["subresources"] == {"status": {}}
    ie_columns = [
        c["name"] for c in docs["InferenceEndpoint"]["versions"][0]["additionalPrinterColumns"]
    ]
    assert ie_columns[:7] == ["Phase", "GPU", "Ready", "Spot", "Reserved", "OnDemand", "$/h"]


def test_crds_stay_far_below_the_client_side_apply_annotation_limit() -> None:
    # kubectl's last-applied annotation is capped at 256 KiB; keep room for growth.
    for name, text in render_crd_files().items():
        assert len(text.encode()) < 128 * 1024, name


def test_unsupported_union_fails_generation() -> None:
    from pydantic import BaseModel

    class Bad(BaseModel):
        x: int | str

    with pytest.raises(SchemaError, match="union"):
        structural_schema(Bad)


def test_generated_yaml_is_loadable() -> None:
    for text in render_crd_files().values():
        assert yaml.safe_load(text)["kind"] == "CustomResourceDefinition"
