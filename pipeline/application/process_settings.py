"""The settings of one Tocsin process: its flags (``tocsin up``/``tocsin run``), resolved.

Three things are called settings, each in a module of its own: these (how a process runs:
where its data and servers are, P, the listen address, the deployment), the configuration it
loads (``pipeline.application.settings``: alertmanager.yml and Tocsin's sidecar file, as a
``Loaded``), and each stage's own typed options built from both by ``pipeline.application.app``
(e.g. ``stages.notifier.service.NotifierOptions``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from pipeline.application.settings import Loaded, load

__all__ = ["CHAINED", "DEFAULT_DEPLOYMENT", "DEPLOYMENTS", "SEPARATE", "Settings"]

# The two deployments of the stage graph (pipeline.application.graph), recorded in TOCSIN_META like P.
CHAINED: Final = "chained"
SEPARATE: Final = "separate"
DEPLOYMENTS: Final = (CHAINED, SEPARATE)
DEFAULT_DEPLOYMENT: Final = CHAINED


@dataclass
class Settings:
    storage_path: Path = Path("data")
    nats_url: str | None = None
    postgres_dsn: str | None = None
    partitions: int = 16
    listen: str = ":9093"
    config_file: Path | None = None
    tocsin_file: Path | None = None  # Tocsin's settings in a file of their own (--tocsin.config.file)
    replica: str | None = None
    stream_replicas: int = 1
    member_ttl: float = 5.0
    counter_delay: float = 0.5
    external_url: str = ""  # --web.external-url (over tocsin.external_url)
    route_prefix: str = ""  # --web.route-prefix: "" or "/path" (no trailing slash)
    data_retention: float | None = None  # --data.retention: the router's notification log of deleted groups
    alerts_gc_interval: float | None = None  # --alerts.gc-interval: how long a resolved alert stays listed
    # --deployment: chained or separate (application.graph), recorded like P; TOCSIN_DEPLOYMENT sets the default
    # (as it does for the CLI), so a whole test suite can run against either
    deployment: str = field(default_factory=lambda: os.environ.get("TOCSIN_DEPLOYMENT") or DEFAULT_DEPLOYMENT)
    loaded: Loaded = field(default_factory=lambda: load(None))
