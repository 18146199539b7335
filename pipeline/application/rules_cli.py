"""``tocsin rules ...``: event-rule templates and rules of a running Tocsin, over its API.

``--url``, ``--token-file`` and ``--org`` as ``tocsin alerts`` (``$TOCSIN_URL``,
``$TOCSIN_TOKEN``/``$TOCSIN_TOKEN_FILE``, ``$TOCSIN_ORG``). Commands:

- ``list [--kind templates|rules] [--source builtin|file|api] [--json]``: what the organisation
  sees, with where each comes from and its version;
- ``show template|rule NAME``: one definition (JSON);
- ``apply FILE``: the templates and rules of a YAML or JSON file in the form of ``tocsin.rules``
  (``templates:``, ``rules:``), templates first; each is created, or replaced at the version
  just read (``If-Match``), or left alone when unchanged;
- ``delete template|rule NAME [--version N]``;
- ``effective [--for-org ORG] [label=value ...]``: the rules that apply to a resource of that
  organisation (default: ``--org``'s) with those labels, most specific first per template.

Exit status: 0 on success, 1 when the API refused or could not be reached (the message says
why), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import httpx
import msgspec
import yaml

from pipeline.application.api_client import ApiClient, CliError, add_connection_arguments, error_message
from stages.rules.defs import DefinitionError, convert_definition

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``rules`` and its subcommands to ``tocsin``'s subparsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "rules", help="event-rule templates and rules of a running Tocsin: list, show, apply, delete, effective")
    add_connection_arguments(p)
    sub = p.add_subparsers(dest="rules_cmd", required=True)
    ls = sub.add_parser("list", help="templates and rules, with their source and version")
    ls.add_argument("--kind", choices=["templates", "rules"], default=None, help="only these")
    ls.add_argument("--source", choices=["builtin", "file", "api"], default=None, help="only from there")
    ls.add_argument("--json", action="store_true", help="one JSON object a line")
    show = sub.add_parser("show", help="one template or rule (JSON)")
    show.add_argument("kind", choices=["template", "rule"])
    show.add_argument("name")
    apply = sub.add_parser("apply", help="create or replace the templates and rules of a file")
    apply.add_argument("file", help="YAML or JSON: templates: [...], rules: [...]")
    delete = sub.add_parser("delete", help="delete a template or rule the API made")
    delete.add_argument("kind", choices=["template", "rule"])
    delete.add_argument("name")
    delete.add_argument("--version", type=int, default=None, help="only if it is still at this version")
    eff = sub.add_parser("effective", help="the rules that apply to a resource, most specific first")
    eff.add_argument("labels", nargs="*", metavar="LABEL=VALUE")
    eff.add_argument("--for-org", dest="for_org", default="", help="the organisation to resolve for "
                     "(default: --org)")
    eff.add_argument("--json", action="store_true")
    return p


def _list(api: ApiClient, args: argparse.Namespace) -> int:
    kinds = [args.kind] if args.kind else ["templates", "rules"]
    for kind in kinds:
        params = {"source": args.source} if args.source else {}
        for d in api.request("GET", f"/api/tocsin/{kind}", params=params).json():
            if args.json:
                print(json.dumps(d, sort_keys=True))
                continue
            spec = d["definition"]
            what = (f"fires {','.join(spec.get('fire', []))}" if kind == "templates" else
                    f"template {spec.get('template')} scope {_scope(spec.get('scope', {}))}"
                    + ("" if spec.get("enabled", True) else " DISABLED"))
            version = f" v{d['version']}" if d.get("version") else ""
            over = f" (overrides {', '.join(d['overrides'])})" if d.get("overrides") else ""
            problems = f"  PROBLEM: {d['problems'][0]['message']}" if d.get("problems") else ""
            print(f"{kind[:-1]:8} {d['name']:32} {d['source']}{version}{over}  {what}{problems}")
    return 0


def _scope(scope: dict[str, Any]) -> str:
    parts = [f"org={scope['org']}"] if scope.get("org") else ["every org"]
    parts += scope.get("matchers", [])
    return "{" + ", ".join(parts) + "}"


def _show(api: ApiClient, args: argparse.Namespace) -> int:
    print(json.dumps(api.request("GET", f"/api/tocsin/{args.kind}s/{args.name}").json(), indent=2, sort_keys=True))
    return 0


def _read_file(path: str) -> dict[str, list[dict[str, Any]]]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CliError(f"{path}: not YAML or JSON: {exc}") from None
    if isinstance(doc, dict) and isinstance(doc.get("tocsin"), dict):  # a whole configuration file
        doc = doc["tocsin"].get("rules") or {}
    if not isinstance(doc, dict) or not set(doc) <= {"templates", "rules"}:
        raise CliError(f"{path}: expected a mapping with templates: and rules: lists")
    out: dict[str, list[dict[str, Any]]] = {}
    for kind in ("templates", "rules"):
        items = doc.get(kind) or []
        if not isinstance(items, list) or not all(isinstance(x, dict) and isinstance(x.get("name"), str)
                                                  for x in items):
            raise CliError(f"{path}: {kind} is a list of mappings, each with a name")
        out[kind] = items
    return out


def _apply(api: ApiClient, args: argparse.Namespace) -> int:
    doc = _read_file(args.file)
    failed = 0
    for kind in ("templates", "rules"):
        for spec in doc[kind]:
            name = spec["name"]
            path = f"/api/tocsin/{kind}/{name}"
            cur = api.request("GET", path, ok=(404,))
            headers = {}
            if cur.status_code == 200:
                found = cur.json()
                if found["source"] == "api" and found.get("version"):
                    # an equal definition is not written again (its version stays)
                    probe = api.request("PUT", path, json=spec, headers={"If-Match": f'"{found["version"]}"'},
                                     ok=(409, 412, 422)) if _differs(kind, found["definition"], spec) else None
                    if probe is None:
                        print(f"{kind[:-1]} {name}: unchanged (version {found['version']})")
                        continue
                    failed += _report(kind, name, probe)
                    continue
                headers = {"If-None-Match": "*"}  # it overrides a built-in or file one by name
            r = api.request("PUT", path, json=spec, headers=headers, ok=(409, 412, 422))
            failed += _report(kind, name, r)
    return 1 if failed else 0


def _differs(kind: str, stored: dict[str, Any], spec: dict[str, Any]) -> bool:
    """Whether ``spec`` (as written in the file) is another definition than ``stored`` (as the
    API keeps it: durations in seconds, a rule scoped to its organisation)."""
    doc = dict(spec)
    if kind == "rules":
        doc["scope"] = {**(doc.get("scope") or {}), "org": stored.get("scope", {}).get("org", "")}
    try:
        value = convert_definition("template" if kind == "templates" else "rule", doc)
    except DefinitionError:
        return True  # the API says what is wrong with it
    return bool(msgspec.to_builtins(value) != stored)


def _report(kind: str, name: str, r: httpx.Response) -> int:
    if r.status_code >= 400:
        print(f"{kind[:-1]} {name}: refused ({r.status_code}): {error_message(r)}", file=sys.stderr)
        return 1
    doc = r.json()
    state = "created" if r.status_code == 201 else "replaced"
    applied = "" if doc.get("applied") else " (not yet applied by the rules stage)"
    print(f"{kind[:-1]} {name}: {state} (version {doc.get('version')}){applied}")
    return 0


def _delete(api: ApiClient, args: argparse.Namespace) -> int:
    headers = {"If-Match": f'"{args.version}"'} if args.version is not None else {}
    doc = api.request("DELETE", f"/api/tocsin/{args.kind}s/{args.name}", headers=headers).json()
    print(f"{args.kind} {args.name}: deleted (version {doc.get('version')})")
    return 0


def _effective(api: ApiClient, args: argparse.Namespace) -> int:
    for pair in args.labels:
        if "=" not in pair:
            raise CliError(f"{pair!r} is not label=value")
    params: list[tuple[str, str]] = [("labels", pair) for pair in args.labels]
    if args.for_org:
        params.append(("org", args.for_org))
    doc = api.request("GET", "/api/tocsin/rules/effective", params=params).json()
    if args.json:
        print(json.dumps(doc, indent=2, sort_keys=True))
        return 0
    for r in doc["rules"]:
        params_text = ", ".join(f"{k}={v}" for k, v in (r["effective_params"] or {}).items()
                                if v not in (None, ""))
        print(f"{r['template']:28} #{r['rank']} {r['rule']:32} {r['source']:8} {_scope(r['scope'])}"
              + (f"  -> {params_text}" if r["rank"] == 1 else ""))
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``tocsin rules <command>``; the exit status."""
    api = ApiClient(args)
    commands = {"list": _list, "show": _show, "apply": _apply, "delete": _delete, "effective": _effective}
    try:
        return int(commands[args.rules_cmd](api, args))
    except CliError as exc:
        print(f"tocsin rules {args.rules_cmd}: {exc}", file=sys.stderr)
        return 1
    finally:
        api.client.close()
