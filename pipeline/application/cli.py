"""The `tocsin` command."""

from __future__ import annotations

import argparse
import difflib
import functools
import gc
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import nats.errors
import nats.js.errors

from contracts.partition import DEFAULT_PARTITIONS
from pipeline.application import alerts_cli, dlq, rules_cli
from pipeline.application.process_settings import DEFAULT_DEPLOYMENT
from pipeline.application.settings import load
from pipeline.application.startup import StartupError, leaf, one_line, start_timeout, wait_for_nats
from pipeline.application.version import tocsin_version
from pipeline.foundation.amconfig import (
    ConfigError,
    check_config_report,
    compile_routes,
    format_duration,
    load_config,
    parse_duration,
)
from pipeline.foundation.amconfig.routes import render_matching_tree, render_routes_test, render_routes_tree
from pipeline.foundation.embedded import redact_url
from pipeline.foundation.logs import setup_logging
from pipeline.foundation.runtime.jetstream import connect
from stages.source.mapping import EmitArgsError, add_emit_arguments, emit_request_from_args

__all__ = ["EVENT_LOOPS", "event_loop_options", "main"]

# The commands that need the HTTP stack, the stages or the topology import them when they run
# (not to dodge a cycle: `tocsin check-config` and `tocsin version` start in a third of the time).

log = logging.getLogger("tocsin.cli")

# Alertmanager's flags that mean nothing to Tocsin: accepted with a warning saying why, so a
# command line written for Alertmanager runs unchanged. Everything else unknown is an error.
_AM_WARNED = {
    "--cluster.": "Tocsin's replicas share state through NATS JetStream, not gossip",
    "--web.get-concurrency": "reads are served from the streams, not from a bounded pool",
    "--web.timeout": "requests are bounded by the API's own limits (tocsin.limits)",
    "--web.systemd-socket": "Tocsin listens on --web.listen-address itself",
    "--enable-feature": "Tocsin has no feature flags; its behaviour is Alertmanager's by default",
    "--auto-gomemlimit": "a Go runtime setting",
    "--auto-gomaxprocs": "a Go runtime setting",
    "--data.maintenance-interval": "state is written as it changes, not snapshotted",
    "--alerts.per-alert-name-limit": "use tocsin.limits",
    "--silences.max-silences": "use tocsin.limits.max_silences",
    "--silences.max-silence-size-bytes": "use tocsin.limits.max_silence_bytes",
}
# Alertmanager's flags Tocsin refuses: ignoring them would leave the process less safe than asked.
_AM_REFUSED = {
    "--web.config.file": "TLS and basic auth of the web server are not read from a web config file; "
                         "use tocsin.auth and a TLS-terminating proxy (docs/deploy.md)",
}

def _dsn_from_env() -> str | None:
    path = os.environ.get("TOCSIN_POSTGRES_DSN_FILE")
    if path:
        return Path(path).read_text().strip()
    return os.environ.get("TOCSIN_POSTGRES_DSN")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nats-url", default=os.environ.get("TOCSIN_NATS_URL"),
                   help="external NATS server (default: start an embedded one); env TOCSIN_NATS_URL")
    p.add_argument("--postgres-dsn", default=_dsn_from_env(),
                   help="external Postgres (default: start an embedded one); env TOCSIN_POSTGRES_DSN or "
                        "TOCSIN_POSTGRES_DSN_FILE (a file holding it, e.g. a mounted Secret)")
    p.add_argument("--storage.path", dest="storage_path", default=os.environ.get("TOCSIN_STORAGE_PATH", "data"),
                   help="data directory (embedded servers, endpoints.json)")
    p.add_argument("--config.file", dest="config_file", default=os.environ.get("TOCSIN_CONFIG_FILE"),
                   help="Alertmanager configuration file (with an optional `tocsin:` section)")
    p.add_argument("--web.listen-address", dest="listen", default=None,
                   help="HTTP address for the API, health and metrics (default :9093 for up, :0 for run)")
    p.add_argument("--partitions", type=int, default=int(os.environ.get("TOCSIN_PARTITIONS", DEFAULT_PARTITIONS)),
                   help="partition count P (fixed once the streams exist)")
    p.add_argument("--replica", default=os.environ.get("TOCSIN_REPLICA"), help="replica id (default: random)")
    p.add_argument("--stream-replicas", type=int, default=1, help="JetStream replicas of each stream (R)")
    p.add_argument("--counter-delay", type=float, default=0.5, help=argparse.SUPPRESS)
    p.add_argument("--log.level", "--log-level", dest="log_level", default=os.environ.get("TOCSIN_LOG_LEVEL", "info"),
                   choices=["debug", "info", "warn", "warning", "error"], help="as Alertmanager's --log.level")
    p.add_argument("--log.format", dest="log_format", default=os.environ.get("TOCSIN_LOG_FORMAT", "logfmt"),
                   choices=["logfmt", "json"], help="as Alertmanager's --log.format")
    p.add_argument("--web.external-url", dest="external_url", default=None,
                   help="the URL Tocsin is reached at (links in notifications; default http://<host>:<port>); "
                        "its path is the default --web.route-prefix")
    p.add_argument("--web.route-prefix", dest="route_prefix", default=None,
                   help="prefix of every HTTP path (default: the path of --web.external-url)")
    p.add_argument("--data.retention", dest="data_retention", type=_duration, default=None,
                   help="how long the notification log of deleted groups is kept (Alertmanager: 120h)")
    p.add_argument("--alerts.gc-interval", dest="alerts_gc_interval", type=_duration, default=None,
                   help="how long a resolved alert stays listed before it is removed (default 1h)")
    p.add_argument("--deployment", default=os.environ.get("TOCSIN_DEPLOYMENT", _default_deployment()),
                   choices=["chained", "separate"],
                   help="chained: rules, router and filter run as one stage (the chain), one commit per input; "
                        "separate: a stage per consumer (fixed once the streams exist); env TOCSIN_DEPLOYMENT")
    p.add_argument("--tocsin.config.file", dest="tocsin_file", default=os.environ.get("TOCSIN_SIDECAR_FILE"),
                   help="Tocsin's own settings in a file of their own (default: tocsin.yml beside --config.file, "
                        "if there is one), so alertmanager.yml stays valid for Alertmanager")


def _default_deployment() -> str:

    return DEFAULT_DEPLOYMENT


def _duration(text: str) -> float:

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _known_flags(parser: argparse.ArgumentParser) -> list[str]:
    flags = [o for a in parser._actions for o in a.option_strings]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                flags += _known_flags(sub)
    return sorted(set(flags))


def _unknown_flags(parser: argparse.ArgumentParser, unknown: list[str]) -> list[str]:
    """Warn about Alertmanager's flags that mean nothing here; the errors of the rest (with a
    hint at the closest known flag). A warned flag's value may be the next word."""
    errors: list[str] = []
    i = 0
    while i < len(unknown):
        word = unknown[i]
        name = word.split("=", 1)[0]
        i += 1
        if name.startswith("-") and "=" not in word and i < len(unknown) and not unknown[i].startswith("-"):
            i += 1  # the flag's value
        why = next((w for prefix, w in _AM_WARNED.items() if name.startswith(prefix)), None)
        if why is not None and name.startswith("--"):
            print(f"tocsin: warning: Alertmanager flag {name} is accepted and has no effect: {why}", file=sys.stderr)
            continue
        refused = _AM_REFUSED.get(name)
        if refused:
            errors.append(f"flag {name} is not supported: {refused}")
        elif name.startswith("-"):
            close = difflib.get_close_matches(name, _known_flags(parser), n=1, cutoff=0.6)
            errors.append(f"unknown flag {name}" + (f", did you mean {close[0]}?" if close else ""))
        else:
            errors.append(f"unexpected argument {word!r}")
    return errors


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tocsin", description="Tocsin: an alerting pipeline on NATS JetStream")
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="run every stage and the API in one process")
    _common(up)
    up.add_argument("--topology", choices=["process", "processes"], default="process",
                    help="process: everything in this process; processes: each stage its own process against "
                         "a 3-node NATS cluster, as the Helm chart arranges it")
    up.add_argument("--replicas", type=int, default=1, help="replicas per stage with --topology processes")
    up.add_argument("--with-source", action="store_true", help="with --topology processes: run the source too")
    run = sub.add_parser("run", help="run one stage (for separate processes and Helm)")
    run.add_argument("stage")
    _common(run)
    cc = sub.add_parser("check-config", help="validate an Alertmanager configuration file")
    cc.add_argument("files", nargs="+")
    sub.add_parser("version", help="print the version")
    routes = sub.add_parser("routes", help="the routing tree, as amtool config routes")
    rsub = routes.add_subparsers(dest="routes_cmd", required=True)
    show = rsub.add_parser("show", help="print the routing tree")
    test = rsub.add_parser("test", help="print the receivers a label set routes to")
    for r in (show, test):
        r.add_argument("--config.file", dest="config_file", default=os.environ.get("TOCSIN_CONFIG_FILE"),
                       required=not os.environ.get("TOCSIN_CONFIG_FILE"))
    test.add_argument("--tree", action="store_true", help="also print the matching routes")
    test.add_argument("--verify.receivers", dest="verify", default="",
                      help="exit 1 unless the receivers are exactly these (comma-separated)")
    test.add_argument("labels", nargs="*", help="label=value ...")

    emit = sub.add_parser("emit", help="insert one event row into the events table (demos, tests)")
    add_emit_arguments(emit)
    emit.add_argument("--postgres-dsn", default=_dsn_from_env(), help="default: the running `tocsin up`'s, from "
                      "<storage.path>/endpoints.json")
    emit.add_argument("--storage.path", dest="storage_path", default=os.environ.get("TOCSIN_STORAGE_PATH", "data"))
    db = sub.add_parser("db", help="database tasks")
    dbsub = db.add_subparsers(dest="db_cmd", required=True)
    migrate = dbsub.add_parser("migrate", help="create the events table, index and publication when missing")
    migrate.add_argument("--postgres-dsn", default=_dsn_from_env())
    migrate.add_argument("--storage.path", dest="storage_path", default=os.environ.get("TOCSIN_STORAGE_PATH", "data"))
    probe = sub.add_parser("test-receiver", help="send one synthetic notification through a receiver's "
                           "integrations and print what each endpoint answered")
    probe.add_argument("receiver")
    probe.add_argument("--config.file", dest="config_file", default=os.environ.get("TOCSIN_CONFIG_FILE"),
                       required=not os.environ.get("TOCSIN_CONFIG_FILE"))
    probe.add_argument("--tocsin.config.file", dest="tocsin_file", default=os.environ.get("TOCSIN_SIDECAR_FILE"))
    probe.add_argument("--alert", nargs="*", default=[], metavar="LABEL=VALUE",
                       help="the test alert's labels (alertname defaults to TocsinTestReceiver)")
    probe.add_argument("--resolved", action="store_true", help="send it resolved")
    probe.add_argument("--dry-run", action="store_true", help="print the HTTP requests instead of sending them")
    probe.add_argument("--web.external-url", dest="external_url", default="http://localhost:9093")
    alerts_cli.add_parser(sub)
    rules_cli.add_parser(sub)
    dlq = sub.add_parser("dlq", help="dead letters: list, show, replay or delete them")
    dlqsub = dlq.add_subparsers(dest="dlq_cmd", required=True)
    dlq_list = dlqsub.add_parser("list", help="every dead letter (one JSON object a line)")
    dlq_list.add_argument("--stream", default=None, help="only this stream (e.g. TOCSIN_GROUPS)")
    for name, text in (("show", "one dead letter in full"),
                       ("replay", "publish its input again on its subject, then delete it"),
                       ("delete", "delete it (after reading it)")):
        cmd = dlqsub.add_parser(name, help=text)
        cmd.add_argument("refs", nargs="+", metavar="STREAM:SEQ", help="as `tocsin dlq list` prints them")
        if name == "replay":
            cmd.add_argument("--keep", action="store_true", help="keep the dead letter after replaying it")
    for cmd in dlqsub.choices.values():
        cmd.add_argument("--nats-url", default=os.environ.get("TOCSIN_NATS_URL"),
                         help="default: the running `tocsin up`'s, from <storage.path>/endpoints.json")
        cmd.add_argument("--storage.path", dest="storage_path",
                         default=os.environ.get("TOCSIN_STORAGE_PATH", "data"))
    return p


def _child_args(args: argparse.Namespace) -> list[str]:
    """The flags every stage process of ``--topology processes`` gets from the parent's."""

    out = ["--log.level", args.log_level, "--log.format", args.log_format, "--deployment", args.deployment]
    for flag, value in (("--web.external-url", args.external_url), ("--web.route-prefix", args.route_prefix),
                        ("--tocsin.config.file", args.tocsin_file)):
        if value is not None:
            out += [flag, str(value)]
    for flag, seconds in (("--data.retention", args.data_retention), ("--alerts.gc-interval", args.alerts_gc_interval)):
        if seconds is not None:
            out += [flag, format_duration(seconds)]
    return out


def _test_receiver(args: argparse.Namespace) -> int:
    from pipeline.application.receiver_probe import parse_labels, probe_receiver

    try:
        labels = parse_labels(args.alert)
        config = load(Path(args.config_file), Path(args.tocsin_file) if args.tocsin_file else None).config
    except ConfigError as exc:
        print("\n".join(f"tocsin: {e}" for e in exc.errors), file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"tocsin test-receiver: {exc}", file=sys.stderr)
        return 2
    try:
        probes = anyio.run(functools.partial(probe_receiver, config, args.receiver, labels, resolved=args.resolved,
                                             dry_run=args.dry_run, external_url=args.external_url))
    except ValueError as exc:
        print(f"tocsin test-receiver: {exc}", file=sys.stderr)
        return 2
    if not probes:
        print(f"{args.receiver}: no integrations: a route to it notifies nothing")
    for probe in probes:
        print("\n".join(probe.lines()))
    return 0 if probes and all(p.ok for p in probes) else 1


def _running_nats_url(args: argparse.Namespace) -> str:
    if args.nats_url:
        return str(args.nats_url)
    url = _endpoint(args, "nats_url")
    if url:
        return url
    raise SystemExit("tocsin: no NATS: give --nats-url (or TOCSIN_NATS_URL), or run `tocsin up` first")


def _dlq(args: argparse.Namespace) -> int:

    try:
        refs = [dlq.parse_ref(r) for r in getattr(args, "refs", [])]
    except ValueError as exc:
        print(f"tocsin dlq: {exc}", file=sys.stderr)
        return 2
    url = _running_nats_url(args)

    async def _run() -> int:

        try:
            await wait_for_nats(url, min(start_timeout(), 5.0))  # (connect would wait for ever)
        except StartupError:
            if not args.nats_url:  # from a stale endpoints.json
                raise SystemExit(_not_running(args)) from None
            raise
        nc = await connect(url, name="tocsin-dlq")
        js = nc.jetstream()
        failed = 0
        try:
            if args.dlq_cmd == "list":
                async for stored in dlq.list_dead_letters(js, stream=args.stream):
                    print(json.dumps(dlq.describe(stored), default=str))
                return 0
            for ref in refs:
                try:
                    if args.dlq_cmd == "show":
                        print(dlq.dumps(dlq.describe(await dlq.get(js, ref), full=True)))
                    elif args.dlq_cmd == "replay":
                        print(await dlq.replay(js, ref, keep=args.keep))
                    else:
                        await dlq.delete(js, ref)
                        print(f"deleted {ref}")
                except (ValueError, nats.errors.Error, nats.js.errors.Error) as exc:
                    print(f"tocsin dlq {args.dlq_cmd}: {ref}: {exc}", file=sys.stderr)
                    failed += 1
            return 1 if failed else 0
        finally:
            await nc.close()

    return anyio.run(_run)


def _routes(args: argparse.Namespace) -> int:

    try:
        root = compile_routes(load_config(args.config_file))
    except ConfigError as exc:
        print("tocsin: invalid configuration:\n  " + "\n  ".join(exc.errors), file=sys.stderr)
        return 1
    if args.routes_cmd == "show":
        print(render_routes_tree(root), end="")
        return 0
    labels = {}
    for item in args.labels:
        name, sep, value = item.partition("=")
        if not sep or not name:
            print(f"tocsin routes test: {item!r} is not label=value", file=sys.stderr)
            return 2
        labels[name] = value.strip('"')
    if args.tree:
        print(render_matching_tree(root, labels))
    receivers = render_routes_test(root, labels)
    print(receivers)
    if args.verify and sorted(args.verify.split(",")) != sorted(receivers.split(",")):
        print("WARNING: Expected receivers did not match resolved receivers.", file=sys.stderr)
        return 1
    return 0


def _endpoint(args: argparse.Namespace, name: str) -> str | None:
    """A running ``tocsin up``'s endpoint, from ``<storage.path>/endpoints.json``."""
    endpoints = Path(args.storage_path) / "endpoints.json"
    if endpoints.exists():
        try:
            recorded = json.loads(endpoints.read_text())
        except (OSError, ValueError):
            recorded = {}
        if not _alive(recorded.get("pid")):  # left by a Tocsin that stopped (or killed)
            raise SystemExit(_not_running(args))
        value = recorded.get(name)
        if value:
            return str(value)
    return None


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # (another user's: running)
        return True
    return True


def _not_running(args: argparse.Namespace) -> str:
    path = Path(args.storage_path).absolute()
    return f"tocsin: no Tocsin is running at {path}; start it with `tocsin up --storage.path {args.storage_path}`"


def _client_run(args: argparse.Namespace, what: str, fn: Any, *fn_args: Any) -> Any:
    """Run a client command against a server: one line when the server does not answer."""

    try:
        return anyio.run(fn, *fn_args)
    except Exception as exc:
        inner = leaf(exc)
        if not isinstance(inner, OSError | TimeoutError) and "nats: no servers" not in str(inner).lower():
            raise
        log.debug("%s failed", what, exc_info=exc)
        given = getattr(args, "postgres_dsn", None) or getattr(args, "nats_url", None)
        if not given and (Path(args.storage_path) / "endpoints.json").exists():
            raise SystemExit(_not_running(args)) from None
        raise SystemExit(f"tocsin: cannot reach {what}: {inner}") from None


def _running_dsn(args: argparse.Namespace) -> str:
    if args.postgres_dsn:
        return str(args.postgres_dsn)
    dsn = _endpoint(args, "postgres_dsn")
    if dsn:
        return dsn
    raise SystemExit("tocsin: no Postgres: give --postgres-dsn (or TOCSIN_POSTGRES_DSN), or run `tocsin up` first")


def _settings(args: argparse.Namespace, default_listen: str) -> object:
    from pipeline.application.app import Settings, route_prefix

    config_file = Path(args.config_file) if args.config_file else None
    tocsin_file = Path(args.tocsin_file) if args.tocsin_file else None
    return Settings(storage_path=Path(args.storage_path), nats_url=args.nats_url, postgres_dsn=args.postgres_dsn,
                    partitions=args.partitions, listen=args.listen or default_listen, config_file=config_file,
                    tocsin_file=tocsin_file, replica=args.replica, stream_replicas=args.stream_replicas,
                    counter_delay=args.counter_delay, external_url=args.external_url or "",
                    route_prefix=route_prefix(args.external_url, args.route_prefix),
                    data_retention=args.data_retention, alerts_gc_interval=args.alerts_gc_interval,
                    deployment=args.deployment, loaded=load(config_file, tocsin_file))


def main(argv: list[str] | None = None) -> int:
    """``tocsin``: a failure is one line on stderr (``tocsin: what failed; what to do``), exit 1."""

    try:
        return _main(argv)
    except KeyboardInterrupt:
        return 130
    except SystemExit:
        raise
    except BaseException as exc:
        inner = leaf(exc)
        if isinstance(inner, SystemExit):  # (raised inside a task group)
            if isinstance(inner.code, str):
                print(inner.code, file=sys.stderr)
                return 1
            return inner.code or 0
        if isinstance(inner, KeyboardInterrupt):
            return 130
        log.debug("tocsin failed", exc_info=exc)  # the traceback, with --log.level=debug
        print(f"tocsin: {one_line(exc)}", file=sys.stderr)
        return 1


def _main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    args, unknown = parser.parse_known_args(argv)
    errors = _unknown_flags(parser, unknown)
    if errors:  # as Alertmanager: a mistyped flag stops the start instead of being ignored
        for error in errors:
            print(f"tocsin: error: {error}", file=sys.stderr)
        return 2
    if args.cmd == "version":
        print(f"tocsin {tocsin_version()}")
        return 0
    if args.cmd == "routes":
        return _routes(args)
    if args.cmd == "dlq":
        return _dlq(args)
    if args.cmd == "test-receiver":
        return _test_receiver(args)
    if args.cmd == "alerts":
        return alerts_cli.run(args)
    if args.cmd == "rules":
        return rules_cli.run(args)
    if args.cmd == "emit":
        from stages.source.emit import emit

        try:
            request = emit_request_from_args(args)
        except EmitArgsError as exc:
            print(f"tocsin emit: {exc}", file=sys.stderr)
            return 2
        print(_client_run(args, "Postgres", emit, _running_dsn(args), request))
        return 0
    if args.cmd == "db":
        from stages.source.emit import migrate

        _client_run(args, "Postgres", migrate, _running_dsn(args))
        print("migrated")
        return 0
    if args.cmd == "check-config":

        # the loader `tocsin up` uses: the tocsin section or sidecar file, the files it names
        ok, report = check_config_report(args.files, loader=lambda name: load(Path(name)).config)
        print(report)
        return 0 if ok else 1
    setup_logging(args.log_level, args.log_format)
    from pipeline.application.app import UP_STAGES, Endpoints, run_process

    try:
        if args.cmd == "run":
            stages = [args.stage]
            settings = _settings(args, "127.0.0.1:0")
        else:
            stages = list(UP_STAGES)
            settings = _settings(args, ":9093")
    except ConfigError as exc:  # one line per problem: tocsin: <file>:<line>: <field>: <problem>
        print("\n".join(f"tocsin: {e}" for e in exc.errors), file=sys.stderr)
        return 1

    if args.cmd == "up" and args.topology == "processes":
        from pipeline.application.topology import run_topology

        async def _topology() -> None:
            async with anyio.create_task_group() as tg:
                topo = await tg.start(lambda task_status: run_topology(
                    Path(args.storage_path), replicas=args.replicas, partitions=args.partitions,
                    listen=args.listen or ":9093", config_file=Path(args.config_file) if args.config_file else None,
                    with_source=args.with_source, child_args=_child_args(args), deployment=args.deployment,
                    task_status=task_status))
                print(f"tocsin {tocsin_version()} ready (processes): API {topo.api_url}  "
                      f"NATS {redact_url(topo.nats_url)}  {len(topo.children)} stage processes  data {topo.storage}",
                      flush=True)

        try:
            anyio.run(_topology)
        except KeyboardInterrupt:
            return 130
        return 0

    async def _main() -> None:
        # A stage allocates a message's worth of objects per input and keeps a large state: the
        # default thresholds (700, 10, 10) run a collection every few hundred messages, and
        # full ones that walk the whole state. Collect less often, and leave out what was
        # there when the process became ready (the rebuilt state, modules): gc.freeze.
        gc.set_threshold(50_000, 20, 100)
        async with anyio.create_task_group() as tg:
            ep: Endpoints = await tg.start(run_process, settings, stages)
            gc.freeze()
            print(f"tocsin {tocsin_version()} ready: API {ep.api_url}  metrics {ep.metrics_url}  "
                  f"NATS {redact_url(ep.nats_url)}"
                  f"{'  Postgres ' + redact_url(ep.postgres_dsn) if ep.postgres_dsn else ''}  data {ep.storage_path}",
                  flush=True)

    try:
        anyio.run(_main, backend_options=event_loop_options(stages, os.environ))
    except KeyboardInterrupt:
        return 130
    return 0


EVENT_LOOPS = ("asyncio", "uvloop")


def event_loop_options(stages: list[str], env: Mapping[str, str]) -> dict[str, bool]:
    """anyio's asyncio backend options: uvloop for a process that runs the notifier alone, where it
    measured faster (webhooks/s; `python -m loadtest.loop_bench`), the default loop elsewhere (no
    gain for the stages). TOCSIN_EVENT_LOOP=uvloop|asyncio forces one for any process."""
    loop = env.get("TOCSIN_EVENT_LOOP") or ("uvloop" if stages == ["notifier"] and _has_uvloop() else "asyncio")
    if loop not in EVENT_LOOPS:
        raise SystemExit(f"tocsin: TOCSIN_EVENT_LOOP={loop!r}: use one of {', '.join(EVENT_LOOPS)}, or unset it")
    return {"use_uvloop": loop == "uvloop"}


def _has_uvloop() -> bool:
    return sys.platform != "win32" and importlib.util.find_spec("uvloop") is not None


if __name__ == "__main__":
    sys.exit(main())
