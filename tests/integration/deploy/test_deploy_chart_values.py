"""The chart's values: what values.schema.json and the templates' checks refuse (with a message that
names the value), and what the derived settings (NATS URL, JetStream replicas, partitions) become."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.integration.deploy.chart import STAGES, STAGES_OF, container, env_of, render

helm_python = pytest.importorskip("helm_python", reason="chart tests need helm-python-sdk (the test extra)")

SOURCE_ON = {"stages": {"source": {"enabled": True}}, "postgres": {"existingSecret": "app-postgres"}}


@pytest.mark.parametrize(("values", "message"), [
    ({"replicas": 3}, "additional properties 'replicas' not allowed"),
    ({"partitions": 0}, "/partitions"),
    ({"partitions": "16"}, "/partitions"),
    ({"stages": {"rules": {"replica": 2}}}, "additional properties 'replica' not allowed"),
    ({"stages": {"worker": {"enabled": True}}}, "additional properties 'worker' not allowed"),
    ({"stages": {"api": {"replicas": -1}}}, "/stages/api/replicas"),
    ({"stages": {"notifier": {"autoscaling": {"minReplicas": 0}}}}, "/stages/notifier/autoscaling/minReplicas"),
    ({"securityContext": {"readOnlyRootFilesystem": False}}, "/securityContext/readOnlyRootFilesystem"),
    ({"securityContext": {"allowPrivilegeEscalation": True}}, "/securityContext/allowPrivilegeEscalation"),
    ({"podSecurityContext": {"runAsNonRoot": False}}, "/podSecurityContext/runAsNonRoot"),
    ({"nats": {"url": "nats://a:4222,nats://b:4222"}}, "/nats/url"),
    ({"nats": {"url": "http://nats:4222"}}, "/nats/url"),
    ({"nats": {"streamReplicas": 0}}, "/nats/streamReplicas"),
    ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ({"config": {"routes": []}}, "additional properties 'routes' not allowed"),
    ({"config": {"receivers": []}}, "/config/receivers"),
    ({"templateFiles": {"alertmanager.yml": "x"}}, "invalid propertyName 'alertmanager.yml'"),
    ({"templateFiles": {"a/b.tmpl": "x"}}, "invalid propertyName 'a/b.tmpl'"),
    ({"serviceMonitor": {"interval": "soon"}}, "/serviceMonitor/interval"),
    ({"service": {"portName": "Web_Port"}}, "/service/portName"),
    ({"postgres": {"password": "x"}}, "additional properties 'password' not allowed"),
], ids=["unknown-top-level", "zero-partitions", "string-partitions", "unknown-stage-key", "unknown-stage",
        "negative-replicas", "hpa-min-zero", "writable-root", "privilege-escalation", "root-allowed",
        "nats-url-list", "nats-url-scheme", "stream-replicas-zero", "pull-policy", "alertmanager-typo",
        "no-receivers", "template-overwrites-config", "template-path", "monitor-interval", "port-name",
        "postgres-unknown-key"])
def test_schema_refuses(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm_python.HelmValuesError, match="schema") as info:
        render(values)
    assert message in str(info.value)


@pytest.mark.parametrize(("values", "message"), [
    ({"nats": {"url": ""}}, "set nats.url or nats.urlSecret.name"),
    ({"stages": {"source": {"enabled": True}}}, "stages.source.enabled needs postgres.existingSecret"),
    ({"nats": {"enabled": True, "streamReplicas": 5}}, "exceeds the NATS cluster size"),
    ({"nats": {"enabled": True, "streamReplicas": 3, "config": {"cluster": {"enabled": False}}}},
     "needs nats.config.cluster.enabled"),
    ({"stages": {"api": {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}}}},
     "stages.api.autoscaling: maxReplicas (2) is below minReplicas (5)"),
], ids=["no-nats", "source-without-postgres", "r-above-cluster", "r-without-cluster", "hpa-inverted"])
def test_templates_refuse(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm_python.HelmRenderError) as info:
        render(values)
    assert message in str(info.value)


@pytest.mark.parametrize(("values", "release", "url", "r"), [
    ({"nats": {"url": "tls://nats.example:4222"}}, "tocsin", "tls://nats.example:4222", 1),
    ({"nats": {"url": "nats://n:4222", "streamReplicas": 3}}, "tocsin", "nats://n:4222", 3),
    ({"nats": {"enabled": True}}, "alerting", "nats://alerting-nats.ns.svc:4222", 3),
    ({"nats": {"enabled": True}}, "nats-prod", "nats://nats-prod.ns.svc:4222", 3),
    ({"nats": {"enabled": True, "fullnameOverride": "bus"}}, "tocsin", "nats://bus.ns.svc:4222", 3),
    ({"nats": {"enabled": True, "config": {"cluster": {"replicas": 5}}}}, "tocsin",
     "nats://tocsin-nats.ns.svc:4222", 5),
    ({"nats": {"enabled": True, "streamReplicas": 1}}, "tocsin", "nats://tocsin-nats.ns.svc:4222", 1),
    ({"nats": {"enabled": True, "config": {"cluster": {"enabled": False}}}}, "tocsin",
     "nats://tocsin-nats.ns.svc:4222", 1),
], ids=["external-tls", "external-r3", "subchart", "release-named-nats", "subchart-fullname", "subchart-5",
        "subchart-r1", "subchart-single-server"])
def test_nats_url_and_stream_replicas(values: dict[str, Any], release: str, url: str, r: int) -> None:
    deployments = render(values, release=release, namespace="ns").stage_objects("Deployment")
    assert deployments
    for stage, d in deployments.items():
        c = container(d)
        assert env_of(c)["TOCSIN_NATS_URL"]["value"] == url, stage
        assert f"--stream-replicas={r}" in c["args"], stage


@settings(max_examples=25, deadline=None)
@given(partitions=st.integers(1, 4096),
       deployment=st.sampled_from([None, *STAGES_OF]),  # None: the default, chained
       replicas=st.fixed_dictionaries({s: st.integers(0, 50) for s in STAGES}),
       enabled=st.fixed_dictionaries({s: st.booleans() for s in STAGES}))
def test_partitions_shared_and_replicas_per_stage(partitions: int, deployment: str | None, replicas: dict[str, int],
                                                  enabled: dict[str, bool]) -> None:
    stages = {s: {"replicas": replicas[s], "enabled": enabled[s]} for s in STAGES}
    chosen = {} if deployment is None else {"deployment": deployment}
    r = render({"partitions": partitions, "stages": stages, **chosen,
                **({} if not enabled["source"] else {"postgres": SOURCE_ON["postgres"]})})
    deployments = r.stage_objects("Deployment")
    deployment = deployment or "chained"
    # the deployment's stages only: the other's entries are ignored, enabled or not
    assert set(deployments) == {s for s in STAGES_OF[deployment] if enabled[s]}
    for stage, d in deployments.items():
        assert d["spec"]["replicas"] == replicas[stage]
        assert f"--partitions={partitions}" in container(d)["args"]
        assert f"--deployment={deployment}" in container(d)["args"]


SEPARATE = {"deployment": "separate"}


@pytest.mark.parametrize(("extra", "stage", "expect"), [
    ({"extraEnv": [{"name": "OTEL_TRACES_EXPORTER", "value": "otlp"}]}, "chain", {"OTEL_TRACES_EXPORTER": "otlp"}),
    ({"stages": {"chain": {"extraEnv": [{"name": "X", "value": "1"}]}}}, "chain", {"X": "1"}),
    ({"stages": {"chain": {"extraEnv": [{"name": "X", "value": "1"}]}}}, "notifier", {}),
    ({**SEPARATE, "extraEnv": [{"name": "OTEL_TRACES_EXPORTER", "value": "otlp"}]}, "rules",
     {"OTEL_TRACES_EXPORTER": "otlp"}),
    ({**SEPARATE, "stages": {"router": {"extraEnv": [{"name": "X", "value": "1"}]}}}, "router", {"X": "1"}),
    ({**SEPARATE, "stages": {"router": {"extraEnv": [{"name": "X", "value": "1"}]}}}, "filter", {}),
], ids=["global-env", "stage-env", "stage-env-stays-in-its-stage", "separate-global-env", "separate-stage-env",
        "separate-stage-env-stays-in-its-stage"])
def test_extra_environment(extra: dict[str, Any], stage: str, expect: dict[str, str]) -> None:
    env = env_of(container(render(extra).stage_objects("Deployment")[stage]))
    got = {k: v.get("value") for k, v in env.items() if k not in ("TOCSIN_REPLICA", "TOCSIN_NATS_URL")}
    assert got == expect
