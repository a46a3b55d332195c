"""deploy/k8s (and the demo overlay) against the Kubernetes OpenAPI schemas, offline: the
``kubernetes-validate`` package ships the schemas of every Kubernetes minor version it knows.
Strict mode rejects unknown fields, so a misspelled key (``livenessProbs``) fails here
instead of being dropped silently by an API server that prunes it. Kustomization files are
kustomize's own format (no Kubernetes schema); kustomize itself is not run here."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy_support import DEPLOY

# The oldest Kubernetes minor the schemas cover and the newest: the manifests must be valid
# for both (a field removed or added in between would show on one of them).
VERSIONS = ("1.25.0", kubernetes_validate.latest_version())


def manifests() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted((DEPLOY / "k8s").rglob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                name = f"{path.relative_to(DEPLOY)}:{doc['kind']}/{doc['metadata']['name']}"
                out.append((name, doc))
    return out


MANIFESTS = manifests()


def test_the_manifests_are_all_found() -> None:
    kinds = {doc["kind"] for _, doc in MANIFESTS}
    assert {"Namespace", "ConfigMap", "Secret", "Deployment", "Service"} <= kinds
    assert "PodDisruptionBudget" in kinds
    assert any(name.startswith("k8s/demo/") for name, _ in MANIFESTS)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("name", "doc"), MANIFESTS, ids=[n for n, _ in MANIFESTS])
def test_manifest_matches_the_kubernetes_schema(
    name: str, doc: dict[str, Any], version: str
) -> None:
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        pytest.fail(f"{name} is not valid Kubernetes {version}: {e.message} at {list(e.path)}")


def test_strict_validation_rejects_a_misspelled_field() -> None:
    """The check above has teeth: the schemas are really applied, unknown keys included."""
    deployment = next(d for _, d in MANIFESTS if d["kind"] == "Deployment")
    broken = copy.deepcopy(deployment)
    container = broken["spec"]["template"]["spec"]["containers"][0]
    container["livenessProbs"] = container.pop("livenessProbe")
    with pytest.raises(kubernetes_validate.ValidationError, match="livenessProbs"):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError, match="integer"):
        kubernetes_validate.validate(wrong_type, VERSIONS[-1], strict=True)


def test_the_schemas_are_bundled() -> None:
    """Offline: the schemas come from the installed package, not from the network."""
    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    for version in VERSIONS:
        assert (root / f"v{version}-local-strict" / "deployment-apps-v1.json").is_file()
