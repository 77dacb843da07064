"""deploy/kubernetes: the manifests load and hang together (a schema-level check).

kubeconform is not installable on this machine (a binary from outside the
package registries), so this checks what a schema check would, and a little
more: kinds and required fields, the selector, ports, probes, and that the
container's arguments are options echod accepts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from echod.tap import Options

KUBE = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes"


def load(name: str) -> dict[str, Any]:
    (document,) = list(yaml.safe_load_all((KUBE / name).read_text()))
    assert isinstance(document, dict)
    return document


def test_deployment_fields() -> None:
    d = load("deployment.yaml")
    assert (d["apiVersion"], d["kind"]) == ("apps/v1", "Deployment")
    spec = d["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert spec["replicas"] >= 2
    (container,) = spec["template"]["spec"]["containers"]
    assert container["name"] and container["image"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert set(ports) == {"echo", "metrics"}
    for probe in ("readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == "/healthz" and get["port"] == "metrics"
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert spec["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    # the drain (10 s) and flush (5 s) fit in the grace period, after preStop
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] >= 5 + 10 + 5


def test_container_arguments_are_valid_echod_options() -> None:
    (container,) = load("deployment.yaml")["spec"]["template"]["spec"]["containers"]
    command = container["command"]
    assert command[0] == "twistd" and "echod" in command
    options = Options()
    options.parseOptions(command[command.index("echod") + 1 :])
    settings = options.settings()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert settings.ports == (f"tcp6:{ports['echo']}:interface=\\:\\:",)
    assert settings.metrics == f"tcp6:{ports['metrics']}:interface=\\:\\:"


def test_service_matches_the_deployment() -> None:
    service = load("service.yaml")
    deployment = load("deployment.yaml")
    assert (service["apiVersion"], service["kind"]) == ("v1", "Service")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    names = {p["name"] for p in container["ports"]}
    for port in service["spec"]["ports"]:
        assert port["targetPort"] in names
        assert port["protocol"] == "TCP"
