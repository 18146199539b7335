"""What every API handler needs: NATS, the partition count, the configuration, the stages' streams."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import msgspec
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from starlette.requests import Request

from contracts.partition import partition_of
from pipeline.application.api.audit import audit_record
from pipeline.application.api.auth.errors import BadRequest
from pipeline.application.api.auth.middleware import identity_of, orgs_of, request_id_of, require
from pipeline.application.api.status_config import marshal_config
from pipeline.application.config.identity import AllOrgs
from pipeline.application.config.limits import LimitsConfig
from pipeline.application.settings import Loaded
from pipeline.foundation.amconfig import RouteNode, compile_routes
from pipeline.foundation.runtime.subjects import AUDIT, StreamNames, token
from stages.filter.views import FilterConfig, status_config

__all__ = ["AUDIT_TTL", "ApiContext"]

AUDIT_TTL = 400 * 24 * 3600  # seconds audit records are kept
_DEFAULT_LIMITS = LimitsConfig()


@dataclass
class ApiContext:
    nc: NATS
    js: JetStreamContext
    partitions: int
    loaded: Loaded
    started_at: float = field(default_factory=time.time)
    # Where the stages' state and outputs are, by output name, in the process's deployment (set by
    # pipeline.application.app.run_process from pipeline.application.graph); None: the separate streams.
    streams: dict[str, StreamNames] | None = None

    def __post_init__(self) -> None:
        self.use(self.loaded)

    def use(self, loaded: Loaded) -> None:
        """Answer from ``loaded`` from now on (a configuration reload)."""
        self.loaded = loaded
        self.routes = compile_routes(loaded.config)
        self.org_routes = {org: compile_routes(c) for org, c in loaded.orgs.items()}
        self._filter_configs: dict[str, FilterConfig] = {}
        self._config_yaml: dict[int, str] = {}  # by id(config): every config is held by self.loaded

    def stream(self, name: str) -> StreamNames:
        """The names of stage output ``name`` (``alerts``, ``groups``, ``sends``) in this deployment."""
        return (self.streams or {}).get(name) or StreamNames(name)

    @property
    def limits(self) -> LimitsConfig:
        """The ``tocsin: limits:`` section, or its defaults when there is none (they protect
        the pipeline: see ``pipeline.application.config.limits``)."""
        return self.loaded.tocsin.limits or _DEFAULT_LIMITS

    @property
    def default_org(self) -> str:
        return self.loaded.tocsin.default_org

    def reads_every_org(self, request: Request) -> bool:
        """Open mode (no authentication, as Alertmanager) and no ``X-Scope-OrgID``: a read spans
        every organisation, as Alertmanager shows every alert to Prometheus, amtool and Grafana,
        which never send the header. With the header, or with authentication on, the request's
        organisations decide (:meth:`orgs_for_read`)."""
        require(request, "read")  # type: ignore[arg-type]
        identity = identity_of(request)
        return (identity.method == "none" and isinstance(identity.orgs, AllOrgs)
                and not request.headers.get("x-scope-orgid", "").strip())

    def orgs_for_read(self, request: Request, permission: str = "read") -> list[str]:
        """The organisations a read covers (several only when the caller's role allows a union)."""
        require(request, permission)  # type: ignore[arg-type]
        return orgs_of(request)

    def org_of(self, request: Request, permission: str = "read") -> str:
        """The one organisation a request acts for (a write must name exactly one)."""
        require(request, permission)  # type: ignore[arg-type]
        orgs = orgs_of(request)
        if len(orgs) != 1:
            raise BadRequest("this request acts for one organisation: name it with X-Scope-OrgID")
        return orgs[0]

    def routes_of(self, org: str) -> RouteNode:
        """The route tree of ``org`` (its own configuration's, else the main one)."""
        return self.org_routes.get(org, self.routes)

    def receivers_for(self, labels: dict[str, str], org: str = "") -> list[str]:
        """The receiver of every route the labels match, in route order: as Alertmanager's
        ``GET /alerts`` lists them (two routes to one receiver list it twice)."""
        return [r.receiver for r in self.routes_of(org).match(labels)]

    async def audit(self, request: Request, org: str, action: str, target: str,
                    details: dict[str, object] | None = None) -> None:
        """Record a write (who, which organisation, what, when) in TOCSIN_AUDIT."""
        rec = audit_record(identity_of(request), org=org, action=action, now=time.time(),
                           request_id=request_id_of(request), target=target, details=details)
        subject = AUDIT.out(partition_of(org, self.partitions), token(org))
        await self.js.publish(subject, msgspec.json.encode(rec), headers={"Nats-TTL": str(AUDIT_TTL)})

    def filter_config(self, org: str) -> FilterConfig:
        """The filter's compiled configuration (inhibit rules, intervals, escalation policies) of
        ``org``, for alert statuses and acknowledgements."""
        if org not in self._filter_configs:
            self._filter_configs[org] = status_config(self.loaded.config_for(org), self.loaded.tocsin.filter)
        return self._filter_configs[org]

    def config_yaml(self, org: str) -> str:
        """The organisation's configuration re-marshalled (no comments, secrets hidden), once per load."""
        config = self.loaded.config_for(org)
        if id(config) not in self._config_yaml:
            self._config_yaml[id(config)] = marshal_config(config)
        return self._config_yaml[id(config)]
