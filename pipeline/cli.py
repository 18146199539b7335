"""The `tocsin` command."""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import anyio
import nats.errors
import nats.js.errors

from contracts.partition import DEFAULT_PARTITIONS

__all__ = ["main"]

# Alertmanager flags Tocsin accepts and ignores (warned), so it can stand where Alertmanager stands.
_AM_IGNORED = ("--cluster.", "--web.external-url", "--web.route-prefix", "--web.config.file", "--log.",
               "--data.retention", "--alerts.gc-interval", "--web.get-concurrency", "--web.timeout",
               "--enable-feature", "--web.systemd-socket", "--auto-gomemlimit", "--auto-gomaxprocs")


def _version() -> str:
    try:
        return version("tocsin")
    except PackageNotFoundError:
        return "0+unknown"


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
    p.add_argument("--log-level", default=os.environ.get("TOCSIN_LOG_LEVEL", "info"))


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
    from stages.source.mapping import add_emit_arguments

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


def _running_nats_url(args: argparse.Namespace) -> str:
    if args.nats_url:
        return str(args.nats_url)
    url = _endpoint(args, "nats_url")
    if url:
        return url
    raise SystemExit("tocsin: no NATS: give --nats-url (or TOCSIN_NATS_URL), or run `tocsin up` first")


def _dlq(args: argparse.Namespace) -> int:
    from pipeline import dlq
    from pipeline.runtime.jetstream import connect

    try:
        refs = [dlq.parse_ref(r) for r in getattr(args, "refs", [])]
    except ValueError as exc:
        print(f"tocsin dlq: {exc}", file=sys.stderr)
        return 2
    url = _running_nats_url(args)

    async def _run() -> int:
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
    from pipeline.amconfig import ConfigError, compile_routes, load_config
    from pipeline.amconfig.routes import render_matching_tree, render_routes_test, render_routes_tree

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
        value = json.loads(endpoints.read_text()).get(name)
        if value:
            return str(value)
    return None


def _running_dsn(args: argparse.Namespace) -> str:
    if args.postgres_dsn:
        return str(args.postgres_dsn)
    dsn = _endpoint(args, "postgres_dsn")
    if dsn:
        return dsn
    raise SystemExit("tocsin: no Postgres: give --postgres-dsn (or TOCSIN_POSTGRES_DSN), or run `tocsin up` first")


def _settings(args: argparse.Namespace, default_listen: str) -> object:
    from pipeline.app import Settings
    from pipeline.settings import load

    config_file = Path(args.config_file) if args.config_file else None
    return Settings(storage_path=Path(args.storage_path), nats_url=args.nats_url, postgres_dsn=args.postgres_dsn,
                    partitions=args.partitions, listen=args.listen or default_listen, config_file=config_file,
                    replica=args.replica, stream_replicas=args.stream_replicas, counter_delay=args.counter_delay,
                    loaded=load(config_file))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args, unknown = _parser().parse_known_args(argv)
    for flag in unknown:
        name = flag.split("=", 1)[0]
        if name.startswith(_AM_IGNORED):
            print(f"tocsin: warning: Alertmanager flag {name} is accepted and ignored", file=sys.stderr)
        else:
            print(f"tocsin: warning: unknown flag {name} ignored", file=sys.stderr)
    if args.cmd == "version":
        print(f"tocsin {_version()}")
        return 0
    if args.cmd == "routes":
        return _routes(args)
    if args.cmd == "dlq":
        return _dlq(args)
    if args.cmd == "emit":
        from stages.source.emit import emit
        from stages.source.mapping import EmitArgsError, emit_request_from_args

        try:
            request = emit_request_from_args(args)
        except EmitArgsError as exc:
            print(f"tocsin emit: {exc}", file=sys.stderr)
            return 2
        print(anyio.run(emit, _running_dsn(args), request))
        return 0
    if args.cmd == "db":
        from stages.source.emit import migrate

        anyio.run(migrate, _running_dsn(args))
        print("migrated")
        return 0
    if args.cmd == "check-config":
        from pipeline.amconfig import check_config_report

        ok, report = check_config_report(args.files)
        print(report)
        return 0 if ok else 1
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    from pipeline.amconfig import ConfigError
    from pipeline.app import UP_STAGES, Endpoints, run_process
    from pipeline.embedded import redact_url

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
        from pipeline.topology import run_topology

        async def _topology() -> None:
            async with anyio.create_task_group() as tg:
                topo = await tg.start(lambda task_status: run_topology(
                    Path(args.storage_path), replicas=args.replicas, partitions=args.partitions,
                    listen=args.listen or ":9093", config_file=Path(args.config_file) if args.config_file else None,
                    with_source=args.with_source, task_status=task_status))
                print(f"tocsin {_version()} ready (processes): API {topo.api_url}  "
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
            print(f"tocsin {_version()} ready: API {ep.api_url}  metrics {ep.metrics_url}  "
                  f"NATS {redact_url(ep.nats_url)}"
                  f"{'  Postgres ' + redact_url(ep.postgres_dsn) if ep.postgres_dsn else ''}  data {ep.storage_path}",
                  flush=True)

    try:
        anyio.run(_main)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
