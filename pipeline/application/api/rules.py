"""Event rules as data over HTTP: templates and rules of an organisation, changed at run time.

``/api/tocsin/templates`` and ``/api/tocsin/rules`` (list, create with POST, read, replace with
PUT, delete), and ``GET /api/tocsin/rules/effective?org=&labels=k=v,...``: the rules that apply
to a resource, most specific first, each with where it comes from (``builtin``, ``file``,
``api``). See docs/rules.md.

**Storage and application.** A change is a ``RuleCommand`` published to TOCSIN_EVENTS, on the
organisation's partition (the rules stage's own input, beside the events it judges) and on a
subject of its own per definition, ``tocsin.events.out.<p>.rules.<org>.<kind>.<name>``:

- the rules stage applies it in stream order into its state (``rules/<org>``), committed with
  its progress: every event after the change sees it, before none does, and a crash replays the
  same order (the hop protocol), so outputs do not depend on when the stage was restarted;
- the last message of a subject is the stored definition (a delete is a message too), read with
  a direct get or a last-per-subject read; its stream sequence is the definition's **version**
  (the ``ETag``). A write names the version it replaces with
  ``Nats-Expected-Last-Subject-Sequence``, so ``If-Match`` is enforced by JetStream itself: two
  writers that read the same version cannot both win (412 for the second).

Writes need the ``admin`` role in the organisation (a tenant admin manages its own); reads need
``read`` (a viewer). Each change is audited in TOCSIN_AUDIT. A write waits (``apply_timeout``)
until the rules stage has applied it, and says whether it had (``applied``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import anyio
import msgspec
from nats.js.errors import APIError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from contracts import RuleCommand, decode_as, encode
from contracts.ids import check_org
from contracts.partition import partition_of
from pipeline.application.api.auth.errors import Forbidden
from pipeline.application.api.auth.middleware import identity_of
from pipeline.application.api.context import ApiContext
from pipeline.application.api.errors import bad_request, not_found
from pipeline.application.api.json_depth import too_deep
from pipeline.foundation.runtime.jetstream import last_message
from pipeline.foundation.runtime.reads import read_last_per_subject
from pipeline.foundation.runtime.subjects import EVENTS, token
from stages.rules.defs import NAME_RE, DefinitionError, Rule, Template, convert_definition
from stages.rules.effective import Catalog, RuleBook, load_checked_rules
from stages.rules.rules import Layer
from stages.rules.views import applied_changes, rule_defs_key

__all__ = ["MAX_DEFINITIONS", "MAX_DEFINITION_BYTES", "MAX_ORG_BYTES", "definition_subject", "parse_labels",
           "rules_routes"]

Kind = Literal["template", "rule"]
MAX_DEFINITIONS = 500  # per organisation (templates and rules): its rules state stays one small value
MAX_DEFINITION_BYTES = 32 * 1024
# all of an organisation's definitions: they are one state value of the rules stage, committed in
# one message (NATS' max_payload is 1 MiB by default)
MAX_ORG_BYTES = 512 * 1024
_WRONG_LAST_SEQUENCE = 10071  # JetStream's error code for a failed Nats-Expected-Last-Subject-Sequence


def definition_subject(partitions: int, org: str, kind: str, name: str = "") -> str:
    """The subject of one definition (or, without ``name``, the filter of an org's)."""
    p = partition_of(org, partitions)
    tail = f"{kind}.{token(name)}" if name else ">"
    return EVENTS.out(p, f"rules.{token(org)}.{tail}")


def parse_labels(values: list[str]) -> dict[str, str]:
    """``k=v,k2="v 2"`` (repeatable) as labels; ``ValueError`` naming the bad pair."""
    labels: dict[str, str] = {}
    for text in values:
        for pair in _split(text):
            name, sep, value = pair.partition("=")
            name, value = name.strip(), value.strip()
            if not sep or not name:
                raise ValueError(f"labels: {pair!r} is not name=value")
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            labels[name] = value
    return labels


def _split(text: str) -> list[str]:
    out, cur, quoted = [], "", False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur)
    return [p for p in out if p.strip()]


def _problem(field: str, message: str, status: int = 422) -> JSONResponse:
    return JSONResponse({"code": status, "field": field, "message": message,
                         "error": f"{field}: {message}" if field else message}, status_code=status)


def _etag(version: int) -> dict[str, str]:
    return {"ETag": f'"{version}"'}


def _if_match(request: Request) -> int | Literal["*"] | None:
    raw = request.headers.get("if-match")
    if raw is None:
        return None
    raw = raw.strip().removeprefix("W/").strip('"')
    if raw == "*":
        return "*"
    if not raw.isdigit():
        raise ValueError(f"If-Match {raw!r} is not a version (an ETag this API gave, such as \"42\")")
    return int(raw)


class _Stored(msgspec.Struct, frozen=True):
    version: int
    command: RuleCommand


class RulesApi:
    """The handlers, over one :class:`ApiContext`."""

    def __init__(self, ctx: ApiContext, apply_timeout: float) -> None:
        self.ctx = ctx
        self.apply_timeout = apply_timeout
        self._catalog: tuple[object, Catalog] | None = None

    # ------------------------------------------------------------------ reads

    def catalog(self) -> Catalog:
        """The built-in and file layers of the configuration in force (reloads included)."""
        section = self.ctx.loaded.tocsin.rules
        if self._catalog is None or self._catalog[0] is not section:
            self._catalog = (section, Catalog(load_checked_rules(section) if section else None))
        return self._catalog[1]

    async def stored(self, org: str) -> dict[tuple[str, str], _Stored]:
        """The organisation's definitions as stored (the last message of each subject; deletes
        included, as the version a re-creation must name)."""
        out: dict[tuple[str, str], _Stored] = {}
        filt = definition_subject(self.ctx.partitions, org, "")
        async for m, _ in read_last_per_subject(self.ctx.js, EVENTS.stream, filt):
            try:
                cmd = decode_as(m.data, RuleCommand)
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue
            if cmd.org == org:
                out[(cmd.kind, cmd.name)] = _Stored(m.metadata.sequence.stream, cmd)
        return out

    async def one(self, org: str, kind: str, name: str) -> _Stored | None:
        raw = await last_message(self.ctx.js, EVENTS.stream, definition_subject(self.ctx.partitions, org, kind, name),
                                 leader=True)
        if raw is None:
            return None
        try:
            return _Stored(raw[0], decode_as(raw[1], RuleCommand))
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None

    @staticmethod
    def layer(stored: dict[tuple[str, str], _Stored]) -> Layer:
        templates: dict[str, Template] = {}
        rules: dict[str, Rule] = {}
        for (_, name), s in sorted(stored.items()):
            if s.command.action != "put":
                continue
            try:
                value = convert_definition(s.command.kind, s.command.spec)
            except DefinitionError:
                continue  # (the rules stage dead-letters it too)
            if isinstance(value, Template):
                templates[name] = value
            elif isinstance(value, Rule):
                rules[name] = value
        return Layer(source="api", templates=templates, rules=rules)

    def book(self, layer: Layer) -> RuleBook:
        base = self.catalog().base
        return base.with_layer(layer) if layer.templates or layer.rules else base

    def view(self, book: RuleBook, kind: str, name: str, stored: _Stored | None) -> dict[str, Any] | None:
        table: dict[str, Any] = book.templates if kind == "template" else book.rules
        if name not in table:
            return None
        value, source = table[name]
        layers = [layer.source for layer in book.layers if name in (layer.templates if kind == "template"
                                                                   else layer.rules)]
        return {"kind": kind, "name": name, "source": source,
                "version": stored.version if stored is not None and source == "api" else None,
                "overrides": layers[:-1], "definition": msgspec.to_builtins(value),
                "problems": [{"field": f, "message": m} for where, f, m in book.problems if where == f"{kind}/{name}"]}

    # ------------------------------------------------------------------ writes

    async def wait_applied(self, org: str, kind: str, name: str, request_id: str | None) -> bool:
        """Until the rules stage's state has the change (``request_id``; None: the deletion)."""
        if self.apply_timeout <= 0:
            return False
        names = self.ctx.stream("alerts")
        subject = names.state(partition_of(org, self.ctx.partitions), rule_defs_key(org))
        ref = f"{kind}/{name}"
        with anyio.move_on_after(self.apply_timeout):
            while True:
                raw = await last_message(self.ctx.js, names.stream, subject, leader=True)
                applied = applied_changes(raw[1] if raw is not None else None)
                if (applied.get(ref) == request_id) if request_id is not None else ref not in applied:
                    return True
                await anyio.sleep(0.02)
        return False

    async def publish(self, org: str, kind: Kind, name: str, action: Literal["put", "delete"],
                      spec: dict[str, Any], expected: int, request: Request) -> tuple[int, str] | Response:
        """Publish the change if the definition is still at ``expected`` (0: never written):
        (its new version, the command's request id), or the 412 answer."""
        request_id = uuid.uuid4().hex
        cmd = RuleCommand(action=action, org=org, kind=kind, name=name, at=time.time(), spec=spec,
                          request_id=request_id, actor=identity_of(request).subject)
        try:
            ack = await self.ctx.js.publish(
                definition_subject(self.ctx.partitions, org, kind, name), encode(cmd),
                headers={"Nats-Expected-Last-Subject-Sequence": str(expected), "Nats-Msg-Id": f"rules:{request_id}"})
        except APIError as exc:
            if exc.err_code == _WRONG_LAST_SEQUENCE:
                return JSONResponse(f"{kind} {name} was changed by another request meanwhile: read it again "
                                    "(its ETag) and retry", status_code=412)
            raise
        return int(ack.seq), request_id

    async def write(self, request: Request, kind: Kind, name: str | None, *, create: bool) -> Response:
        ctx = self.ctx
        org = ctx.org_of(request, "admin")
        body = await request.body()
        if len(body) > MAX_DEFINITION_BYTES:
            return JSONResponse(f"a {kind} is at most {MAX_DEFINITION_BYTES} bytes", status_code=413)
        if too_deep(body):
            return bad_request("request nests too deeply to parse")
        try:
            doc = msgspec.json.decode(body)
            cond = _if_match(request)
        except (msgspec.DecodeError, ValueError) as exc:
            return bad_request(f"invalid request: {exc}")
        if not isinstance(doc, dict):
            return _problem("", f"a {kind} is a JSON object")
        if name is None:
            name = doc.get("name") if isinstance(doc.get("name"), str) else None
            if not name:
                return _problem("name", "is required")
        doc.setdefault("name", name)
        if doc["name"] != name:
            return _problem("name", f"is {doc['name']!r} but the URL names {name!r}")
        if kind == "rule":
            scope = doc.get("scope")
            if scope is None:
                doc["scope"] = scope = {}
            if isinstance(scope, dict):
                if scope.get("org") not in (None, "", org):
                    return _problem("scope.org", f"a rule of organisation {org} is scoped to it, not to "
                                                 f"{scope.get('org')!r}")
                scope["org"] = org
        try:
            value = convert_definition(kind, doc)
        except DefinitionError as exc:
            return _problem(exc.field, exc.message)
        stored = await self.stored(org)
        cur = stored.get((kind, name))
        exists = cur is not None and cur.command.action == "put"
        if create and exists:
            return JSONResponse(f"{kind} {name} exists (version {cur.version if cur else 0}): replace it with PUT",
                                status_code=409)
        if (cond == "*" and not exists) or (isinstance(cond, int) and (not exists or cur is None or
                                                                     cur.version != cond)):
            return JSONResponse(f"{kind} {name} is at version {cur.version if exists and cur else 'none'}, not "
                                f"{cond}: read it again and retry", status_code=412)
        if request.headers.get("if-none-match", "").strip() == "*" and exists:
            return JSONResponse(f"{kind} {name} exists", status_code=412)
        if not exists and sum(1 for s in stored.values() if s.command.action == "put") >= MAX_DEFINITIONS:
            return JSONResponse(f"organisation {org} has {MAX_DEFINITIONS} templates and rules, the most it may",
                                status_code=409)
        before = self.book(self.layer(stored))
        after_layer = self.layer(stored)
        table: dict[str, Any] = dict(after_layer.templates if kind == "template" else after_layer.rules)
        table[name] = value
        after_layer = msgspec.structs.replace(after_layer, **{"templates" if kind == "template" else "rules": table})
        after = self.book(after_layer)
        new = [p for p in after.problems if p not in before.problems]
        for where, field, message in new:
            if where == f"{kind}/{name}":
                return _problem(field, message)
        if new:
            where, field, message = new[0]
            return JSONResponse(f"this {kind} would break {where.replace('/', ' ')}: {message}", status_code=409)
        spec = msgspec.to_builtins(value)
        total = len(encode(value)) + sum(len(msgspec.json.encode(s.command.spec)) for k, s in stored.items()
                                         if s.command.action == "put" and k != (kind, name))
        if total > MAX_ORG_BYTES:
            return JSONResponse(f"organisation {org}'s templates and rules would take {total} bytes, more than "
                                f"{MAX_ORG_BYTES}: delete some first", status_code=409)
        published = await self.publish(org, kind, name, "put", spec, cur.version if cur else 0, request)
        if isinstance(published, Response):
            return published
        version, request_id = published
        await ctx.audit(request, org, f"rules.{kind}.{'update' if exists else 'create'}", name, {"version": version})
        applied = await self.wait_applied(org, kind, name, request_id)
        body_out = self.view(after, kind, name, _Stored(version, RuleCommand(
            action="put", org=org, kind=kind, name=name, at=0.0))) or {}
        body_out["applied"] = applied
        return JSONResponse(body_out, status_code=200 if exists else 201, headers={
            **_etag(version), "Location": f"/api/tocsin/{kind}s/{name}"})

    async def delete(self, request: Request, kind: Kind, name: str) -> Response:
        org = self.ctx.org_of(request, "admin")
        try:
            cond = _if_match(request)
        except ValueError as exc:
            return bad_request(str(exc))
        stored = await self.stored(org)
        cur = stored.get((kind, name))
        if cur is None or cur.command.action != "put":
            book = self.book(self.layer(stored))
            table: dict[str, Any] = book.templates if kind == "template" else book.rules
            if name in table:
                return JSONResponse(f"{kind} {name} comes from the {table[name][1]} rules, which the API cannot "
                                    f"delete; override it by name instead (a rule: with enabled: false)",
                                    status_code=409)
            return not_found(f"{kind} {name} not found")
        if isinstance(cond, int) and cond != cur.version:
            return JSONResponse(f"{kind} {name} is at version {cur.version}, not {cond}: read it again and retry",
                                status_code=412)
        before = self.book(self.layer(stored))
        rest = {k: v for k, v in stored.items() if k != (kind, name)}
        after = self.book(self.layer(rest))
        new = [p for p in after.problems if p not in before.problems]
        if new:
            where, _, message = new[0]
            return JSONResponse(f"deleting {kind} {name} would break {where.replace('/', ' ')}: {message}; "
                                "delete or change that first", status_code=409)
        published = await self.publish(org, kind, name, "delete", {}, cur.version, request)
        if isinstance(published, Response):
            return published
        version = published[0]
        await self.ctx.audit(request, org, f"rules.{kind}.delete", name, {"version": version})
        applied = await self.wait_applied(org, kind, name, None)
        return JSONResponse({"deleted": True, "version": version, "applied": applied}, headers=_etag(version))


def rules_routes(ctx: ApiContext, *, apply_timeout: float = 5.0) -> list[BaseRoute]:
    """The routes of templates and rules (see the module). ``apply_timeout``: how long a write
    waits for the rules stage to apply it (0: not at all)."""
    api = RulesApi(ctx, apply_timeout)

    def listing(kind: Kind) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            org = ctx.org_of(request)
            stored = await api.stored(org)
            book = api.book(api.layer(stored))
            table: dict[str, Any] = book.templates if kind == "template" else book.rules
            source = request.query_params.get("source")
            if source and source not in ("builtin", "file", "api"):
                return bad_request(f"source must be builtin, file or api, not {source[:64]!r}")
            out = [v for name in sorted(table)
                   if (v := api.view(book, kind, name, stored.get((kind, name)))) is not None
                   and (not source or v["source"] == source)]
            if kind == "rule":  # an org sees the rules of every org scoped to it only
                out = [v for v in out if v["definition"].get("scope", {}).get("org", "") in ("", org)]
            return JSONResponse(out)
        return handler

    def reading(kind: Kind) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            org, name = ctx.org_of(request), request.path_params["name"]
            if not NAME_RE.match(name):
                return not_found(f"{kind} {name} not found")
            stored = await api.stored(org)
            book = api.book(api.layer(stored))
            v = api.view(book, kind, name, stored.get((kind, name)))
            if v is None or (kind == "rule" and v["definition"].get("scope", {}).get("org", "") not in ("", org)):
                return not_found(f"{kind} {name} not found")
            return JSONResponse(v, headers=_etag(v["version"]) if v["version"] else None)
        return handler

    def creating(kind: Kind) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            return await api.write(request, kind, None, create=True)
        return handler

    def replacing(kind: Kind) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            return await api.write(request, kind, request.path_params["name"], create=False)
        return handler

    def deleting(kind: Kind) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            name = request.path_params["name"]
            if not NAME_RE.match(name):
                return not_found(f"{kind} {name} not found")
            return await api.delete(request, kind, name)
        return handler

    async def effective(request: Request) -> Response:
        org = request.query_params.get("org") or ""
        if org:
            ctx.orgs_for_read(request)
            if problem := check_org(org):  # (open mode may act for any organisation: not for a bad name)
                return bad_request(f"org: {problem}")
            if not identity_of(request).may_act_for(org):
                raise Forbidden(f"{identity_of(request).subject} may not read organisation {org}")
        else:
            org = ctx.org_of(request)
        try:
            labels = parse_labels(request.query_params.getlist("labels"))
        except ValueError as exc:
            return bad_request(str(exc))
        book = api.book(api.layer(await api.stored(org)))
        return JSONResponse({"org": org, "labels": labels, "rules": book.effective(org, labels)})

    routes: list[BaseRoute] = [Route("/api/tocsin/rules/effective", effective, methods=["GET"])]
    for kind in ("template", "rule"):
        base = f"/api/tocsin/{kind}s"
        routes += [
            Route(base, listing(kind), methods=["GET"]),  # type: ignore[arg-type]
            Route(base, creating(kind), methods=["POST"]),  # type: ignore[arg-type]
            Route(base + "/{name}", reading(kind), methods=["GET"]),  # type: ignore[arg-type]
            Route(base + "/{name}", replacing(kind), methods=["PUT"]),  # type: ignore[arg-type]
            Route(base + "/{name}", deleting(kind), methods=["DELETE"]),  # type: ignore[arg-type]
        ]
    return routes
