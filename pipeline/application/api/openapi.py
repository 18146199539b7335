"""Tocsin's description of the API v2 it serves (``openapi.yaml``), as YAML and as JSON."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import yaml
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

__all__ = ["OPENAPI", "routes"]

OPENAPI = Path(__file__).with_name("openapi.yaml")


@cache
def _openapi() -> tuple[bytes, bytes]:
    text = OPENAPI.read_bytes()
    return text, json.dumps(yaml.safe_load(text)).encode()


async def openapi_yaml(request: Request) -> Response:
    return Response(_openapi()[0], media_type="application/yaml")


async def openapi_json(request: Request) -> Response:
    return Response(_openapi()[1], media_type="application/json")


def routes() -> list[BaseRoute]:
    return [Route("/api/v2/openapi.yaml", openapi_yaml, methods=["GET"]),
            Route("/api/v2/openapi.json", openapi_json, methods=["GET"])]
