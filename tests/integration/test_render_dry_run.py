"""Everything frugal renders is accepted by the real API server (server-side dry-run)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from frugal import kube
from frugal.catalog.profiles import ProfileName
from frugal.render.fleet import render_files
from frugal.settings import load_settings

pytestmark = pytest.mark.cluster
REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "manifests" / "examples").glob("*.yaml"))


@pytest.mark.parametrize("profile", list(ProfileName))
def test_rendered_children_pass_server_side_dry_run(cluster, namespace, profile, tmp_path) -> None:
    base = yaml.safe_load((REPO / "manifests/settings/karpenter-aws.yaml").read_text())
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text(yaml.safe_dump({**base, "profile": profile.value}))
    docs, problems = render_files(EXAMPLES, load_settings(settings_file), namespace)
    assert not problems
    # Every kind of child, so each is checked against the server (budgets come with two
    # replicas: the examples have 5 endpoints, 7 Deployments, 2 budgets).
    assert {d["kind"] for d in docs} == {"Deployment", "Service", "PodDisruptionBudget"}
    assert len(docs) >= 14
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
        stored = kube.apply(cluster.api, doc, "frugal-dry-run", dry_run=True)
        assert stored["metadata"]["name"] == doc["metadata"]["name"]


def test_render_cli_prints_plain_yaml(tmp_path) -> None:
    from typer.testing import CliRunner

    from frugal.cli import app

    result = CliRunner().invoke(
        app,
        [
            "render",
            "-f",
            str(EXAMPLES[0]),
            "--settings",
            str(REPO / "manifests/settings/karpenter-aws.yaml"),
        ],
    )
    assert result.exit_code == 0, result.output
    docs = list(yaml.safe_load_all(result.stdout))
    assert {d["kind"] for d in docs} == {"Deployment", "Service", "PodDisruptionBudget"}
    assert "&id" not in result.stdout
