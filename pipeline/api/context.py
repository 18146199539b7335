"""What every API handler needs: NATS, the partition count, the configuration."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from starlette.requests import Request

from pipeline.amconfig import compile_routes
from pipeline.settings import Loaded

__all__ = ["ApiContext"]


@dataclass
class ApiContext:
    nc: NATS
    js: JetStreamContext
    partitions: int
    loaded: Loaded
    started_at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        self.routes = compile_routes(self.loaded.config)

    @property
    def default_org(self) -> str:
        return self.loaded.tocsin.default_org

    def org_of(self, request: Request) -> str:
        return request.headers.get("x-scope-orgid") or self.default_org

    def receivers_for(self, labels: dict[str, str]) -> list[str]:
        seen: list[str] = []
        for r in self.routes.match(labels):
            if r.receiver not in seen:
                seen.append(r.receiver)
        return seen

    @property
    def filter_config(self) -> object:
        """The filter's compiled configuration (inhibit rules, intervals), for alert statuses."""
        if not hasattr(self, "_filter_config"):
            from stages.filter.config import filter_config, filter_options

            self._filter_config = filter_config(self.loaded.config, filter_options(self.loaded.tocsin.filter))
        return self._filter_config
