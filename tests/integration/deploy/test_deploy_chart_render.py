"""The Helm chart rendered by real Helm for its default values (in both deployments, chained and
separate) and every ci/*-values.yaml: lint, Kubernetes schemas (offline, kubernetes-validate), and
what each object must say per case."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml

from pipeline.application.settings import load_text
from tests.integration.deploy.chart import (
    CHART,
    MISSING_NATS,
    NAMESPACE,
    RELEASE,
    STAGES_OF,
    Rendered,
    ci_values,
    container,
    env_of,
    load_values,
    merge_values,
    render,
)

helm_python = pytest.importorskip("helm_python", reason="chart tests need helm-python-sdk (the test extra)")
kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="chart tests need kubernetes-validate")

CHAINED = frozenset(STAGES_OF["chained"])
SEPARATE = frozenset(STAGES_OF["separate"])
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schemas shipped.
KUBE_VERSIONS = ("1.25.0", "1.37.0")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class Expect:
    """What one values file must render to, written out by hand."""

    values: str | None  # a ci/ file, or None for the chart's defaults
    fullname: str
    replicas: dict[str, int | None]  # enabled stages; None: the HPA owns the count
    hpa: dict[str, tuple[int, int]] = field(default_factory=dict)
    pdb: frozenset[str] = CHAINED
    deployment: str = "chained"  # what every pod gets as --deployment
    overrides: dict[str, Any] = field(default_factory=dict)  # set on top of the values (helm --set)
    partitions: int = 16
    stream_replicas: int = 1
    nats: str = "nats://nats:4222"  # the URL, or "secret:<name>/<key>"
    postgres_secret: tuple[str, str] | None = None  # (Secret, key) mounted on the source
    receiver_secret: str | None = None  # Secret mounted on the notifier
    api_service: tuple[str, str] = ("tocsin", "http-web")  # (name, port name)
    service_monitor: bool = False
    test_pod: bool = True

    def load(self) -> dict[str, Any] | None:
        values = None if self.values is None else load_values(CHART / "ci" / self.values)
        return {**(values or {}), **self.overrides} if self.overrides else values

    @property
    def id(self) -> str:
        name = self.values.removesuffix("-values.yaml") if self.values else "defaults"
        return "-".join([name, *(f"{k}={v}" for k, v in self.overrides.items())])


THREE = {"chain": 2, "notifier": 2, "api": 2}
FIVE = {"rules": 2, "router": 2, "filter": 2, "notifier": 2, "api": 2}
CREDENTIALS = "$(TOCSIN_NATS_USER):$(TOCSIN_NATS_PASSWORD)"  # expanded by Kubernetes from nats.credentialsSecret
CASES = [
    Expect(None, "tocsin", dict(THREE), pdb=CHAINED - {"source"}),
    Expect(None, "tocsin", dict(FIVE), pdb=SEPARATE - {"source"}, deployment="separate",
           overrides={"deployment": "separate"}),
    Expect("full-values.yaml", "tocsin", {"source": 2, "chain": 4, "notifier": None, "api": None},
           hpa={"notifier": (2, 12), "api": (3, 9)}, partitions=32, stream_replicas=3,
           nats=f"tls://{CREDENTIALS}@nats.messaging.svc:4222", postgres_secret=("tocsin-postgres-dsn", "dsn"),
           receiver_secret="tocsin-receivers", service_monitor=True),
    Expect("full-values.yaml", "tocsin",
           {"source": 2, "rules": 7, "router": 2, "filter": 2, "notifier": None, "api": None},
           hpa={"notifier": (2, 12), "api": (3, 9)}, pdb=SEPARATE, deployment="separate",
           overrides={"deployment": "separate"}, partitions=32, stream_replicas=3,
           nats=f"tls://{CREDENTIALS}@nats.messaging.svc:4222", postgres_secret=("tocsin-postgres-dsn", "dsn"),
           receiver_secret="tocsin-receivers", service_monitor=True),
    Expect("existing-secrets-values.yaml", "alerting", {"source": 1, **THREE},
           pdb=frozenset({"chain", "notifier"}), nats="secret:nats-credentials/url",
           postgres_secret=("app-postgres", "replication-dsn"), receiver_secret="alerting-receivers",
           api_service=("alertmanager", "web")),
    Expect("nats-subchart-values.yaml", "tocsin", {**FIVE, "rules": 3, "router": 3, "filter": 3},
           pdb=SEPARATE - {"source"}, deployment="separate", partitions=8, stream_replicas=3,
           nats=f"nats://{CREDENTIALS}@tocsin-nats.{NAMESPACE}.svc:4222"),
    Expect("minimal-values.yaml", "tocsin", dict.fromkeys(("chain", "notifier", "api"), 1),
           pdb=frozenset(), partitions=4, nats="nats://nats.messaging.svc:4222", test_pod=False),
]
IDS = [c.id for c in CASES]


@pytest.fixture(params=CASES, ids=IDS)
def case(request: pytest.FixtureRequest) -> Expect:
    expect: Expect = request.param
    return expect


_renders: dict[str, Rendered] = {}


def rendered(case: Expect) -> Rendered:
    if case.id not in _renders:
        _renders[case.id] = render(case.load())
    return _renders[case.id]


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def pod_labels(deployment: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


def test_every_ci_values_file_has_expectations() -> None:
    assert {p.name for p in ci_values()} == {c.values for c in CASES if c.values}


# --------------------------------------------------------------------------- Helm and Kubernetes


def test_lint_is_clean(case: Expect) -> None:
    report = helm_python.lint(str(CHART), case.load(), strict=True, namespace=NAMESPACE, kube_version="v1.30.0")
    findings = [m for m in report["messages"] if m["severity"] >= 2 and m["error"] != MISSING_NATS]
    assert findings == []
    assert [e for e in report["errors"] if e != MISSING_NATS] == []


@pytest.mark.parametrize("kube", KUBE_VERSIONS)
def test_manifests_validate_against_kubernetes_schemas(case: Expect, kube: str) -> None:
    problems: list[str] = []
    unchecked: list[str] = []
    for obj in rendered(case).objects:
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            unchecked.append(obj["kind"])  # a CRD: kubernetes-validate ships core schemas only
            continue
        try:
            kubernetes_validate.validate(obj, kube, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message} at {list(exc.path)}")
    assert problems == []
    assert unchecked == (["ServiceMonitor"] if case.service_monitor else [])


def test_objects_are_namespaced_labelled_and_named_validly(case: Expect) -> None:
    objs = rendered(case).objects
    assert objs
    for obj in objs:
        meta = obj["metadata"]
        assert meta["namespace"] == NAMESPACE, meta["name"]
        assert DNS_LABEL.match(meta["name"]) and len(meta["name"]) <= 63, meta["name"]
        assert meta["labels"]["app.kubernetes.io/instance"] == RELEASE, meta["name"]
        assert meta["labels"]["app.kubernetes.io/name"] == "tocsin", meta["name"]


def test_config_map_holds_the_configuration_tocsin_loads(case: Expect) -> None:
    cm = rendered(case).get("ConfigMap", f"{case.fullname}-config")
    text = cm["data"]["alertmanager.yml"]
    loaded = load_text(text, "alertmanager.yml")  # raises ConfigError on an invalid configuration
    assert loaded.config.route is not None
    merged = merge_values(case.load())
    assert yaml.safe_load(text) == merged["config"]
    for name, body in merged["templateFiles"].items():
        assert cm["data"][name] == body


# --------------------------------------------------------------------------- stages


def test_one_deployment_per_enabled_stage_with_its_replicas(case: Expect) -> None:
    deployments = rendered(case).stage_objects("Deployment")
    assert set(deployments) == set(case.replicas)
    assert set(deployments) <= set(STAGES_OF[case.deployment])
    for stage, replicas in case.replicas.items():
        d = deployments[stage]
        assert d["metadata"]["name"] == f"{case.fullname}-{stage}"
        assert d["spec"].get("replicas") == replicas, stage
        assert matches(d["spec"]["selector"]["matchLabels"], pod_labels(d))
        assert pod_labels(d)["app.kubernetes.io/component"] == stage


def test_stage_command_line_and_environment(case: Expect) -> None:
    for stage, d in rendered(case).stage_objects("Deployment").items():
        c = container(d)
        args = c["args"]
        assert args[:2] == ["run", stage]
        port = 9093 if stage == "api" else 9100
        for flag in (f"--partitions={case.partitions}", f"--stream-replicas={case.stream_replicas}",
                     f"--deployment={case.deployment}",
                     f"--web.listen-address=:{port}", "--config.file=/etc/tocsin/config/alertmanager.yml",
                     "--storage.path=/var/lib/tocsin"):
            assert flag in args, (stage, flag)
        assert c["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
        env = env_of(c)
        assert env["TOCSIN_REPLICA"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
        nats = env["TOCSIN_NATS_URL"]
        if case.nats.startswith("secret:"):
            name, key = case.nats.removeprefix("secret:").split("/")
            assert nats["valueFrom"] == {"secretKeyRef": {"name": name, "key": key}}
        else:
            assert nats["value"] == case.nats
        assert "TOCSIN_POSTGRES_DSN" not in env  # never in the environment, only as a file


def test_probes_hit_health_and_readiness(case: Expect) -> None:
    for stage, d in rendered(case).stage_objects("Deployment").items():
        c = container(d)
        assert c["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "http"}, stage
        assert c["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "http"}, stage


def _pods(r: Rendered) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(name, pod spec, container) of every Deployment and the test Pod."""
    out = [(d["metadata"]["name"], d["spec"]["template"]["spec"], container(d)) for d in r.of_kind("Deployment")]
    out += [(p["metadata"]["name"], p["spec"], container(p)) for p in r.of_kind("Pod")]
    return out


def test_pods_run_non_root_read_only_without_capabilities(case: Expect) -> None:
    pods = _pods(rendered(case))
    assert len(pods) == len(case.replicas) + case.test_pod
    for name, spec, c in pods:
        psc, csc = spec["securityContext"], c["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 10001, name
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert csc["readOnlyRootFilesystem"] is True, name
        assert csc["allowPrivilegeEscalation"] is False, name
        assert csc["capabilities"] == {"drop": ["ALL"]}, name
        assert csc["runAsNonRoot"] is True and csc["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        volumes = {v["name"]: v for v in spec["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        assert "emptyDir" in volumes[mounts["/tmp"]], name
        assert set(mounts.values()) <= set(volumes), name


def _secret_volumes(d: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v["secret"] for v in d["spec"]["template"]["spec"]["volumes"] if "secret" in v}


def _mount(d: dict[str, Any], volume: str) -> dict[str, Any]:
    return next(m for m in container(d)["volumeMounts"] if m["name"] == volume)


def test_postgres_dsn_is_a_file_on_the_source_only(case: Expect) -> None:
    r = rendered(case)
    deployments = r.stage_objects("Deployment")
    if case.postgres_secret is None:
        assert "source" not in deployments
        assert r.find("Secret", f"{case.fullname}-postgres") is None
        return
    name, key = case.postgres_secret
    source = deployments["source"]
    secret = _secret_volumes(source)["postgres"]
    assert secret["secretName"] == name
    assert secret["items"] == [{"key": key, "path": "dsn"}]
    mount = _mount(source, "postgres")
    assert mount["readOnly"] is True
    path = f"{mount['mountPath']}/dsn"
    assert env_of(container(source))["TOCSIN_POSTGRES_DSN_FILE"]["value"] == path
    postgres = (case.load() or {})["postgres"]
    made = r.find("Secret", name)
    if postgres.get("existingSecret"):
        assert made is None  # the operator's Secret, not the chart's
    else:
        assert made is not None
        assert base64.b64decode(made["data"][key]).decode() == postgres["dsn"]
    for stage, d in deployments.items():
        if stage != "source":
            assert "postgres" not in _secret_volumes(d), stage
            assert "TOCSIN_POSTGRES_DSN_FILE" not in env_of(container(d)), stage


def test_receiver_credentials_are_files_on_the_notifier_only(case: Expect) -> None:
    r = rendered(case)
    deployments = r.stage_objects("Deployment")
    for stage, d in deployments.items():
        volumes = _secret_volumes(d)
        if stage == "notifier" and case.receiver_secret:
            assert volumes["receiver-secrets"]["secretName"] == case.receiver_secret
            mount = _mount(d, "receiver-secrets")
            assert (mount["mountPath"], mount["readOnly"]) == ("/etc/tocsin/secrets", True)
        else:
            assert "receiver-secrets" not in volumes, stage
    values = case.load() or {}
    wanted = values.get("receiverSecrets", {})
    made = r.find("Secret", f"{case.fullname}-receivers")
    if wanted.get("data") and not wanted.get("existingSecret"):
        assert made is not None
        decoded = {k: base64.b64decode(v).decode() for k, v in made["data"].items()}
        assert decoded == {k: str(v) for k, v in wanted["data"].items()}
        # every *_file path the configuration names is a key of the mounted Secret
        text = r.get("ConfigMap", f"{case.fullname}-config")["data"]["alertmanager.yml"]
        named = set(re.findall(r"/etc/tocsin/secrets/([-._a-zA-Z0-9]+)", text))
        assert named and named <= set(decoded)
    else:
        assert made is None


# --------------------------------------------------------------------------- services, monitoring, scaling


def test_api_service_is_alertmanager_compatible(case: Expect) -> None:
    r = rendered(case)
    name, port_name = case.api_service
    svc = r.get("Service", name)
    assert svc["spec"]["ports"] == [{"name": port_name, "port": 9093, "targetPort": "http", "protocol": "TCP"}]
    targets = [s for s, d in r.stage_objects("Deployment").items() if matches(svc["spec"]["selector"], pod_labels(d))]
    assert targets == ["api"]


def test_every_stage_has_a_headless_metrics_service(case: Expect) -> None:
    r = rendered(case)
    deployments = r.stage_objects("Deployment")
    services = {s["metadata"]["name"]: s for s in r.of_kind("Service")
                if s["metadata"]["labels"].get("tocsin.io/metrics") == "true"}
    assert set(services) == {f"{case.fullname}-{stage}" for stage in deployments}
    for stage in deployments:
        svc = services[f"{case.fullname}-{stage}"]
        assert svc["spec"]["clusterIP"] == "None"
        assert [(p["name"], p["targetPort"]) for p in svc["spec"]["ports"]] == [("metrics", "http")]
        selected = [s for s, other in deployments.items() if matches(svc["spec"]["selector"], pod_labels(other))]
        assert selected == [stage]


def test_service_monitor_toggle_scrapes_every_stage(case: Expect) -> None:
    r = rendered(case)
    monitors = r.of_kind("ServiceMonitor")
    if not case.service_monitor:
        assert monitors == []
        return
    [sm] = monitors
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    values = case.load() or {}
    for k, v in values["serviceMonitor"].get("labels", {}).items():
        assert sm["metadata"]["labels"][k] == v
    [endpoint] = sm["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("metrics", "/metrics")
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    scraped = {s["metadata"]["labels"]["app.kubernetes.io/component"] for s in r.of_kind("Service")
               if matches(sm["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])}
    assert scraped == set(case.replicas)  # each stage once: the API Service is not scraped twice
    scraped_services = [s for s in r.of_kind("Service")
                        if matches(sm["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])]
    assert all(any(p["name"] == "metrics" for p in s["spec"]["ports"]) for s in scraped_services)


def test_hpa_toggle_takes_over_replicas(case: Expect) -> None:
    r = rendered(case)
    hpas = r.stage_objects("HorizontalPodAutoscaler")
    assert {s: (h["spec"]["minReplicas"], h["spec"]["maxReplicas"]) for s, h in hpas.items()} == case.hpa
    deployments = r.stage_objects("Deployment")
    for stage, h in hpas.items():
        assert h["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                               "name": deployments[stage]["metadata"]["name"]}
        assert h["spec"]["metrics"], stage
        assert "replicas" not in deployments[stage]["spec"], stage


def test_pod_disruption_budgets_select_their_stage(case: Expect) -> None:
    r = rendered(case)
    pdbs = r.stage_objects("PodDisruptionBudget")
    assert set(pdbs) == case.pdb
    deployments = r.stage_objects("Deployment")
    for stage, pdb in pdbs.items():
        selected = [s for s, d in deployments.items() if matches(pdb["spec"]["selector"]["matchLabels"], pod_labels(d))]
        assert selected == [stage]
        assert ("minAvailable" in pdb["spec"]) != ("maxUnavailable" in pdb["spec"])


# --------------------------------------------------------------------------- helm test, notes, rollouts


def test_helm_test_pod_round_trips_through_the_api_service(case: Expect) -> None:
    r = rendered(case)
    pods = r.of_kind("Pod")
    if not case.test_pod:
        assert pods == []
        return
    [pod] = pods
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    c = container(pod)
    assert c["command"] == ["python", "-c"]
    assert c["args"] == [(CHART / "files" / "api-roundtrip.py").read_text()]
    name, _ = case.api_service
    assert env_of(c)["TOCSIN_API_URL"]["value"] == f"http://{name}.{NAMESPACE}.svc:9093"
    assert c["image"] == container(r.stage_objects("Deployment")["api"])["image"]


def test_notes_tell_where_the_api_is(case: Expect) -> None:
    notes = rendered(case).notes
    name, _ = case.api_service
    assert f"http://{name}.{NAMESPACE}.svc:9093" in notes
    assert f"Partitions: {case.partitions}" in notes
    assert f"deployment={case.deployment}: " in notes


def _checksums(r: Rendered) -> dict[str, str]:
    return {s: d["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
            for s, d in r.stage_objects("Deployment").items()}


@pytest.mark.parametrize(("change", "rolls"), [
    ({"config": {"route": {"group_wait": "10s"}}}, True),
    ({"templateFiles": {"extra.tmpl": '{{ define "x" }}x{{ end }}'}}, True),
    ({"stages": {"chain": {"replicas": 5}}}, False),
], ids=["route-change", "template-added", "replicas-only"])
def test_configuration_change_rolls_the_pods(change: dict[str, Any], rolls: bool) -> None:
    before, after = _checksums(render()), _checksums(render(change))
    assert set(before) == set(after)
    assert all((before[s] != after[s]) == rolls for s in before)
