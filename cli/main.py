"""``klambda``: argument parsing and dispatch only; the work lives in ``up`` and ``commands``."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from klambda.api import defaults
from klambda.cli import commands, dlq, sources
from klambda.cli.state import NotRunning, default_data_dir


def _seconds(parser: argparse.ArgumentParser, flag: str, default: float, what: str) -> None:
    """A duration flag (its default from klambda.api.defaults)."""
    parser.add_argument(
        flag, type=float, default=default, metavar="SECONDS", help=f"{what} (default %(default)s)"
    )


def _keep_warm(parser: argparse.ArgumentParser, what: str) -> None:
    _seconds(parser, "--keep-warm", defaults.KEEP_WARM, what)


def _cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not a CIDR: {value}") from e


def _runtime_image(value: str) -> tuple[str, str]:
    runtime, _, image = value.partition("=")
    if not runtime or not image:
        raise argparse.ArgumentTypeError(f"not RUNTIME=IMAGE: {value}")
    return runtime, image


def _retry_delay(parser: argparse.ArgumentParser) -> None:
    _seconds(
        parser,
        "--async-retry-delay",
        defaults.ASYNC_RETRY_DELAY,
        "wait before the first retry of an async event's function error; the second waits "
        "twice as long",
    )


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir",
        default=str(default_data_dir()),
        help="state and logs of the local platform (env KLAMBDA_DATA_DIR; default %(default)s)",
    )
    ns = argparse.ArgumentParser(add_help=False)
    ns.add_argument("-n", "--namespace", default=defaults.NAMESPACE, help="namespace (account)")

    p = argparse.ArgumentParser(prog="klambda", description="Lambda-compatible functions, locally")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", parents=[common], help="run the platform with your functions")
    up.add_argument(
        "-f",
        "--filename",
        action="append",
        help="manifest file or directory (repeatable; default examples/)",
    )
    up.add_argument("--host", default="127.0.0.1", help="gateway address (default %(default)s)")
    up.add_argument(
        "--port", type=int, default=defaults.GATEWAY_PORT, help="gateway port (default %(default)s)"
    )
    up.add_argument("--redis-url", help="use this Redis instead of starting an embedded one")
    up.add_argument(
        "--region", default=defaults.REGION, help="region in ARNs (default %(default)s)"
    )
    _keep_warm(up, "how long idle environments stay warm")
    up.add_argument(
        "--no-zygote",
        dest="zygote",
        action="store_false",
        help="start each Python environment as a new interpreter instead of forking it from "
        "one that has imported the runtime client already (slower cold starts)",
    )
    up.add_argument(
        "--concurrency-limit",
        type=int,
        default=defaults.CONCURRENCY_LIMIT,
        metavar="N",
        help="regional limit on invocations in flight (default %(default)s)",
    )
    _retry_delay(up)
    up.add_argument(
        "--durability",
        choices=["default", "strict"],
        default="default",
        help="embedded Redis: strict syncs every accepted event to disk before it is "
        "acknowledged; default syncs every second (see docs/operations.md)",
    )
    _seconds(
        up,
        "--shutdown-grace",
        defaults.SHUTDOWN_GRACE,
        "on Ctrl-C, how long in-flight invocations get to finish; a second Ctrl-C skips it",
    )

    a = sub.add_parser("apply", parents=[common], help="create or update objects from manifests")
    a.add_argument("-f", "--filename", action="append", required=True, help="file or directory")

    d = sub.add_parser("delete", parents=[common, ns], help="delete objects")
    d.add_argument(
        "kind", help="function | version | alias | eventsourcemapping | configmap | secret"
    )
    d.add_argument("names", nargs="+", metavar="NAME")

    g = sub.add_parser("get", parents=[common, ns], help="list objects")
    g.add_argument(
        "kind",
        help="functions | versions | aliases | eventsourcemappings | queues | streams | "
        "schedules | configmaps | secrets",
    )
    g.add_argument("names", nargs="*", metavar="NAME")
    g.add_argument("-o", "--output", choices=["table", "wide", "json", "yaml"], default="table")
    g.add_argument("-A", "--all-namespaces", action="store_true")

    pb = sub.add_parser("publish", parents=[common, ns], help="publish a version of a function")
    pb.add_argument("name")
    pb.add_argument("--description", help="what this version is")

    u = sub.add_parser("url", parents=[common, ns], help="print a function's URL")
    u.add_argument("name")
    u.add_argument("--qualifier", help="alias")

    i = sub.add_parser("invoke", parents=[common, ns], help="invoke a function, print its result")
    i.add_argument("name")
    i.add_argument("--payload", help="JSON event, or @FILE")
    i.add_argument("--qualifier", help="version or alias")
    i.add_argument("--tail", action="store_true", help="print the invocation's log to stderr")
    i.add_argument(
        "--async",
        dest="event",
        action="store_true",
        help="invoke asynchronously (InvocationType Event): print the request id",
    )

    d = sub.add_parser("dlq", help="dead-letter queues: list them, redrive them to a function")
    ds = d.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    dl = ds.add_parser("list", parents=[common, ns], help="print a queue's messages")
    dl.add_argument("queue")
    dl.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    dr = ds.add_parser(
        "redrive", parents=[common, ns], help="send a queue's messages to a function (async)"
    )
    dr.add_argument("queue")
    dr.add_argument("--to", required=True, metavar="FUNCTION", help="the function to invoke")
    dr.add_argument("--qualifier", help="version or alias of the function")

    sources.add_parsers(sub, common, ns)

    lg = sub.add_parser("logs", parents=[common, ns], help="print a function's logs")
    lg.add_argument("name")
    lg.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")

    sub.add_parser("env", parents=[common], help="print exports for boto3 and the AWS CLI")

    op = sub.add_parser("operator", help="run the Kubernetes operator (in a cluster)")
    op.add_argument("--kubeconfig", help="kubeconfig (default: $KUBECONFIG or in-cluster)")
    op.add_argument(
        "--watch-namespace",
        action="append",
        dest="namespaces",
        help="namespace to watch (repeatable; default all)",
    )
    op.add_argument("--lease-namespace", default=defaults.NAMESPACE, help="namespace of the Lease")
    op.add_argument(
        "--gateway-url",
        default=defaults.PUBLIC_URL,
        help="public base URL of the gateway (for function URLs in status)",
    )
    op.add_argument("--region", default=defaults.REGION)
    op.add_argument(
        "--api-qps",
        type=float,
        default=100.0,
        help="sustained requests per second to the API server (default %(default)s)",
    )
    _keep_warm(op, "how long an unused version keeps pods beyond its provisioned concurrency")
    op.add_argument(
        "--api-burst",
        type=int,
        default=200,
        help="requests allowed at once before --api-qps applies (default %(default)s)",
    )
    op.add_argument(
        "--code-host",
        action="append",
        dest="code_hosts",
        metavar="PATTERN",
        help="a host code.zip URLs may name (shell pattern, repeatable; default any): the "
        "operator fetches them from inside the cluster",
    )
    op.add_argument(
        "--pod-cidr",
        action="append",
        dest="pod_cidrs",
        type=_cidr,
        metavar="CIDR",
        help="the cluster's pod address range (repeatable): left out of function pods' "
        "outside-world egress, so no network plugin lets them reach platform pods by address",
    )

    op.add_argument(
        "--runtime-image",
        action="append",
        dest="runtime_images",
        type=_runtime_image,
        metavar="RUNTIME=IMAGE",
        help="the image of a runtime's pods (repeatable), e.g. python3.12=registry/runtime:3.12",
    )
    op.add_argument(
        "--runtime-pull-policy",
        default="IfNotPresent",
        choices=("Always", "IfNotPresent", "Never"),
        help="pull policy of runtime images (default %(default)s)",
    )
    op.add_argument(
        "--redis-url",
        help="the Redis the gateways use: Queue and Stream statuses then show what they hold, "
        "Schedules when they last fired, and Streams are declared for producers",
    )

    gw = sub.add_parser("gateway", help="run the gateway against a Kubernetes cluster")
    gw.add_argument("--kubeconfig", help="kubeconfig (default: $KUBECONFIG or in-cluster)")
    gw.add_argument("--watch-namespace", action="append", dest="namespaces")
    gw.add_argument("--host", default="0.0.0.0")
    gw.add_argument("--port", type=int, default=defaults.GATEWAY_PORT)
    gw.add_argument("--public-url", default=defaults.PUBLIC_URL)
    gw.add_argument(
        "--url-domain",
        default="lambda-url.localhost",
        help="host-name suffix of host-form function URLs, <url-id>.<domain> (default "
        "%(default)s); point a wildcard DNS name and ingress host at the gateway",
    )
    gw.add_argument(
        "--platform-namespace",
        help="namespace of the operator (its Secret klambda-shim-key; default: the kubeconfig's "
        "namespace, in a pod the gateway's own)",
    )
    gw.add_argument("--redis-url", help="Redis for asynchronous invocations")
    gw.add_argument(
        "--shared-concurrency",
        action="store_true",
        help="keep concurrency limits in Redis with the other gateway replicas (needs "
        "--redis-url; several replicas then enforce reserved concurrency together)",
    )
    gw.add_argument(
        "--async-queue-limit",
        type=int,
        default=defaults.ASYNC_QUEUE_LIMIT,
        help="asynchronous events one namespace may have waiting (more get 429; default "
        "%(default)s)",
    )
    _retry_delay(gw)
    gw.add_argument("--region", default=defaults.REGION)
    gw.add_argument("--concurrency-limit", type=int, default=defaults.CONCURRENCY_LIMIT)
    _keep_warm(gw, "how long after its last use this gateway reports a version as used")
    gw.add_argument(
        "--trusted-proxy",
        action="append",
        default=[],
        metavar="CIDR",
        dest="trusted_proxies",
        help="a proxy in front of the gateway (e.g. the ingress) whose X-Forwarded-For gives "
        "the client's address for aws:SourceIp (repeatable; default none: the TCP peer)",
    )
    _seconds(
        gw,
        "--shutdown-grace",
        defaults.SHUTDOWN_GRACE,
        "on SIGTERM, how long requests in flight get to finish",
    )
    gw.add_argument(
        "--replica-name",
        default=None,
        help="this replica's name: its async dispatcher's consumer (a restarted replica of "
        "the same name resumes the events it held at once; other replicas take over a dead "
        "one's after their visibility timeout) and its demand reports (default: the host "
        "name, a pod's name)",
    )

    k = sub.add_parser("keys", help="access keys of principals (SigV4 callers)")
    ks = k.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    ks.add_parser("list", parents=[common], help="list access keys (never their secrets)")
    kc = ks.add_parser("create", parents=[common, ns], help="create a key pair for a principal")
    kc.add_argument("name", help="principal (user) name")
    kc.add_argument("--policy", help="identity policy (IAM JSON file) to attach to the principal")
    kd = ks.add_parser("delete", parents=[common], help="delete an access key")
    kd.add_argument("access_key_id")
    return p


def _up(args: argparse.Namespace) -> int:
    # gRPC's C core logs connection events at INFO by default; users want errors only.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    from klambda.cli.up import UpError, UpOptions, run

    files = args.filename or ["examples"]
    if not args.filename and not Path("examples").is_dir():
        print(
            "error: no examples/ folder here: run from the klambda repository, or pass "
            "-f FILE_OR_DIR",
            file=sys.stderr,
        )
        return 1
    options = UpOptions(
        data_dir=Path(args.data_dir),
        files=files,
        host=args.host,
        port=args.port,
        redis_url=args.redis_url,
        region=args.region,
        idle_timeout=args.keep_warm,
        concurrency_limit=args.concurrency_limit,
        shutdown_grace=args.shutdown_grace,
        durability="always" if args.durability == "strict" else "everysec",
        async_retry_delay=args.async_retry_delay,
        zygote=args.zygote,
    )
    if args.concurrency_limit < 100:
        print(
            "error: --concurrency-limit must be at least 100 (the unreserved minimum)",
            file=sys.stderr,
        )
        return 2
    try:
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is a Linux dependency
            return asyncio.run(run(options))
        return uvloop.run(run(options))
    except UpError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


COMMANDS = {
    "apply": commands.apply,
    "delete": commands.delete,
    "get": commands.get,
    "url": commands.url,
    "publish": commands.publish,
    "keys": commands.keys,
    "invoke": commands.invoke,
    "dlq": dlq.dlq,
    "queue": sources.queue,
    "stream": sources.stream,
    "schedule": sources.schedule,
    "logs": commands.logs,
    "env": commands.env,
}


def _until_signalled(run: Callable[[asyncio.Event], Awaitable[int]]) -> int:
    """Runs a long-lived component until SIGINT or SIGTERM sets its stop event."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    async def wired() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await run(stop)

    return asyncio.run(wired())


def _operator(args: argparse.Namespace) -> int:
    from klambda.controller.kube.operator import OperatorSettings
    from klambda.controller.kube.operator import run as run_operator

    settings = OperatorSettings(
        kubeconfig=args.kubeconfig,
        namespaces=args.namespaces,
        lease_namespace=args.lease_namespace,
        gateway_url=args.gateway_url,
        region=args.region,
        api_qps=args.api_qps,
        api_burst=args.api_burst,
        keep_warm=args.keep_warm,
        code_hosts=tuple(args.code_hosts or ("*",)),
        pod_cidrs=tuple(args.pod_cidrs or ()),
        runtime_images=dict(args.runtime_images or ()),
        runtime_pull_policy=args.runtime_pull_policy,
    )
    stats = None
    if args.redis_url:
        import redis.asyncio as aioredis

        from klambda.gateway.source_stats import RedisSourceStats

        stats = RedisSourceStats(aioredis.Redis.from_url(args.redis_url))
    return _until_signalled(lambda stop: run_operator(settings, stop, stats))


def _gateway(args: argparse.Namespace) -> int:
    if args.shared_concurrency and not args.redis_url:
        print("error: --shared-concurrency needs --redis-url", file=sys.stderr)
        return 2
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    from klambda.gateway.serve import run as run_gateway
    from klambda.gateway.settings import GatewaySettings

    settings = GatewaySettings(
        host=args.host,
        port=args.port,
        region=args.region,
        redis_url=args.redis_url,
        async_queue_limit=args.async_queue_limit,
        async_retry_delay=args.async_retry_delay,
        concurrency_limit=args.concurrency_limit,
        keep_warm=args.keep_warm,
        shutdown_grace=args.shutdown_grace,
        trusted_proxies=tuple(args.trusted_proxies),
        url_domain=args.url_domain,
        shared_concurrency=args.shared_concurrency,
        async_consumer=args.replica_name,
        name=args.replica_name or "",
    )
    return _until_signalled(
        lambda stop: run_gateway(
            settings,
            args.kubeconfig,
            args.namespaces,
            args.public_url,
            stop,
            args.platform_namespace,
        )
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "up":
        return _up(args)
    if args.command == "operator":
        return _operator(args)
    if args.command == "gateway":
        return _gateway(args)
    try:
        return COMMANDS[args.command](args, sys.stdout)
    except (commands.CliError, NotRunning) as e:
        print(f"error: {e}", file=sys.stderr)
        return getattr(e, "code", 1)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
