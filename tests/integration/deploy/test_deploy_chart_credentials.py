"""NATS and Postgres credentials reach the pods from Kubernetes Secrets only: the chart composes
the NATS URL from a Secret's user and password, mounts a CA for TLS, and refuses credentials in
plain values (they would be stored in the release and shown in the pod spec)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.integration.deploy.chart import STAGES_OF, ci_values, container, env_of, load_values, render

helm_python = pytest.importorskip("helm_python", reason="chart tests need helm-python-sdk (the test extra)")

CREDS = {"credentialsSecret": {"name": "nats-auth"}}


def _env_list(values: dict[str, Any], stage: str = "chain") -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = container(render(values).stage_objects("Deployment")[stage])["env"]
    return env


@pytest.mark.parametrize(("nats", "url"), [
    ({"url": "nats://nats.messaging.svc:4222", **CREDS},
     "nats://$(TOCSIN_NATS_USER):$(TOCSIN_NATS_PASSWORD)@nats.messaging.svc:4222"),
    ({"url": "tls://nats.example:4222", **CREDS}, "tls://$(TOCSIN_NATS_USER):$(TOCSIN_NATS_PASSWORD)@nats.example:4222"),
    ({"enabled": True, **CREDS}, "nats://$(TOCSIN_NATS_USER):$(TOCSIN_NATS_PASSWORD)@tocsin-nats.monitoring.svc:4222"),
], ids=["external", "external-tls", "subchart"])
def test_nats_credentials_come_from_the_secret(nats: dict[str, Any], url: str) -> None:
    for stage in ("chain", "api", "notifier"):
        env = _env_list({"nats": nats}, stage)
        names = [e["name"] for e in env]
        # Kubernetes expands $(VAR) only from entries listed before it.
        assert names.index("TOCSIN_NATS_USER") < names.index("TOCSIN_NATS_PASSWORD") < names.index("TOCSIN_NATS_URL")
        by_name = {e["name"]: e for e in env}
        assert by_name["TOCSIN_NATS_USER"]["valueFrom"] == {"secretKeyRef": {"name": "nats-auth", "key": "user"}}
        assert by_name["TOCSIN_NATS_PASSWORD"]["valueFrom"] == {
            "secretKeyRef": {"name": "nats-auth", "key": "password"}}
        assert by_name["TOCSIN_NATS_URL"]["value"] == url


def test_secret_keys_are_configurable() -> None:
    env = env_of(container(render({"nats": {"credentialsSecret": {
        "name": "n", "userKey": "username", "passwordKey": "pw"}}}).stage_objects("Deployment")["chain"]))
    assert env["TOCSIN_NATS_USER"]["valueFrom"]["secretKeyRef"] == {"name": "n", "key": "username"}
    assert env["TOCSIN_NATS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "n", "key": "pw"}


def test_without_credentials_no_user_variables() -> None:
    env = env_of(container(render().stage_objects("Deployment")["chain"]))
    assert "TOCSIN_NATS_USER" not in env and "TOCSIN_NATS_PASSWORD" not in env
    assert env["TOCSIN_NATS_URL"]["value"] == "nats://nats:4222"


@pytest.mark.parametrize(("tls", "files"), [
    ({"name": "nats-ca"}, {"ca.crt": "ca.crt"}),
    ({"name": "nats-client", "caKey": "ca.pem", "certKey": "tls.crt", "keyKey": "tls.key"},
     {"ca.pem": "ca.crt", "tls.crt": "tls.crt", "tls.key": "tls.key"}),
], ids=["ca", "mutual"])
def test_nats_tls_files_are_mounted_on_every_stage(tls: dict[str, str], files: dict[str, str]) -> None:
    deployments = render({"nats": {"url": "tls://nats:4222", "tlsSecret": tls},
                          "stages": {"source": {"enabled": True}},
                          "postgres": {"existingSecret": "pg"}}).stage_objects("Deployment")
    assert set(deployments) == set(STAGES_OF["chained"])
    for stage, d in deployments.items():
        volumes = {v["name"]: v for v in d["spec"]["template"]["spec"]["volumes"]}
        secret = volumes["nats-tls"]["secret"]
        assert secret["secretName"] == tls["name"], stage
        assert {i["key"]: i["path"] for i in secret["items"]} == files, stage
        mount = next(m for m in container(d)["volumeMounts"] if m["name"] == "nats-tls")
        assert mount["readOnly"] is True and mount["mountPath"] == "/etc/tocsin/nats-tls"
        env = env_of(container(d))
        assert env["TOCSIN_NATS_CA_FILE"]["value"] == "/etc/tocsin/nats-tls/ca.crt"
        if "certKey" in tls:
            assert env["TOCSIN_NATS_CERT_FILE"]["value"] == "/etc/tocsin/nats-tls/tls.crt"
            assert env["TOCSIN_NATS_KEY_FILE"]["value"] == "/etc/tocsin/nats-tls/tls.key"
        else:
            assert "TOCSIN_NATS_CERT_FILE" not in env


@pytest.mark.parametrize(("values", "message"), [
    ({"nats": {"url": "nats://tocsin:hunter2@nats:4222"}}, "nats.url holds credentials"),
    ({"nats": {"url": "nats://s3cret-token@nats:4222"}}, "nats.url holds credentials"),
    ({"nats": {"url": "", "urlSecret": {"name": "u"}, **CREDS}}, "set one of nats.credentialsSecret.name"),
    ({"stages": {"source": {"enabled": True}}, "postgres": {"dsn": "postgresql://u:p@db/app"}},
     "postgres.dsn holds a password"),
    ({"stages": {"source": {"enabled": True}}, "postgres": {"dsn": "host=db user=u password=p dbname=app"}},
     "postgres.dsn holds a password"),
    ({"nats": {"tlsSecret": {"name": "t", "certKey": "tls.crt"}}}, "needs nats.tlsSecret.keyKey"),
], ids=["nats-url-password", "nats-url-token", "two-credential-sources", "dsn-url-password",
        "dsn-keyword-password", "cert-without-key"])
def test_templates_refuse_plain_credentials(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm_python.HelmRenderError) as info:
        render(values)
    assert message in str(info.value)


def test_a_dsn_without_password_still_gets_a_chart_made_secret() -> None:
    dsn = "postgresql://tocsin@db.example.com/app?sslmode=verify-full"
    r = render({"stages": {"source": {"enabled": True}}, "postgres": {"dsn": dsn}})
    made = r.get("Secret", "tocsin-postgres")
    assert base64.b64decode(made["data"]["dsn"]).decode() == dsn


@pytest.mark.parametrize("path", ci_values(), ids=lambda p: p.name.removesuffix("-values.yaml"))
def test_no_ci_example_carries_a_plain_credential(path: Any) -> None:
    """Every URL in a stage's environment either has no user or gets it from a Secret."""
    for stage, d in render(load_values(path)).stage_objects("Deployment").items():
        for e in container(d).get("env", []):
            value = str(e.get("value", ""))
            if "://" in value and "@" in value.split("://", 1)[1].split("/", 1)[0]:
                assert value.split("://", 1)[1].startswith("$(TOCSIN_NATS_USER):$(TOCSIN_NATS_PASSWORD)@"), \
                    (path.name, stage, e["name"])
