"""The client commands: apply, delete, get, url, invoke, logs, env.

Each takes parsed arguments and returns an exit code; errors the user can fix are raised as
``CliError`` with a message, never as a traceback.
"""

from __future__ import annotations

import argparse
import base64
import json
import shlex
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any, TextIO

import yaml

from klambda.api.arn import account_for, function_arn
from klambda.api.manifest import ManifestError, load_documents
from klambda.api.routes import url_id
from klambda.api.types import kind_named
from klambda.cli.client import AdminClient, ApiError, signed
from klambda.cli.printer import print_table
from klambda.cli.state import PlatformState


class CliError(Exception):
    """A failure to report as ``error: <message>`` with exit code ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _state(args: argparse.Namespace) -> PlatformState:
    return PlatformState.find(Path(args.data_dir).expanduser().resolve())


def _admin_error(e: ApiError) -> CliError:
    body = e.body if isinstance(e.body, dict) else {}
    if body.get("reason") == "Invalid" and body.get("errors"):
        lines = []
        for err in body["errors"]:
            lines.append(f"{err['subject']} is invalid:")
            lines += [f"  {c['field']}: {c['message']}" for c in err["causes"]]
        return CliError("\n".join(lines))
    return CliError(str(e))


def apply(args: argparse.Namespace, out: TextIO) -> int:
    docs = []
    for path in args.filename:
        try:
            docs += [d.data for d in load_documents(path)]
        except ManifestError as e:
            raise CliError(str(e)) from e
    if not docs:
        raise CliError(f"no manifests found in {', '.join(args.filename)}")
    try:
        results = AdminClient(_state(args)).apply(docs)
    except ApiError as e:
        raise _admin_error(e) from e
    for r in results:
        print(f"{r['kind'].lower()}/{r['name']} {r['result']}", file=out)
    return 0


def delete(args: argparse.Namespace, out: TextIO) -> int:
    kind = kind_named(args.kind)
    if kind is None:
        raise CliError(f"unknown resource type {args.kind!r}", 2)
    client = AdminClient(_state(args))
    for name in args.names:
        try:
            client.delete(kind, args.namespace, name)
        except ApiError as e:
            raise _admin_error(e) from e
        print(f'{kind.lower()} "{name}" deleted', file=out)
    return 0


def _ready(obj: dict[str, Any]) -> tuple[str, str]:
    for c in obj.get("status", {}).get("conditions", []):
        if c.get("type") == "Ready":
            return c.get("status", "Unknown"), c.get("reason", "")
    return "Unknown", ""


def get(args: argparse.Namespace, out: TextIO) -> int:
    kind = kind_named(args.kind)
    if kind is None:
        raise CliError(f"unknown resource type {args.kind!r}", 2)
    client = AdminClient(_state(args))
    try:
        if args.names:
            items = [client.get(kind, args.namespace, n) for n in args.names]
        else:
            items = client.list(kind, None if args.all_namespaces else args.namespace)
    except ApiError as e:
        raise _admin_error(e) from e
    if args.output == "json":
        json.dump(items if not args.names or len(items) != 1 else items[0], out, indent=2)
        print(file=out)
        return 0
    if args.output == "yaml":
        yaml.safe_dump_all(items, out, sort_keys=False)
        return 0
    if not items:
        where = "any" if args.all_namespaces else f"the {args.namespace}"
        print(f"No resources found in {where} namespace.", file=sys.stderr)
        return 0
    print_table(out, kind, items, namespaces=args.all_namespaces, wide=args.output == "wide")
    return 0


def url(args: argparse.Namespace, out: TextIO) -> int:
    state = _state(args)
    try:
        fn = AdminClient(state).get("Function", args.namespace, args.name)
    except ApiError as e:
        raise _admin_error(e) from e
    if args.qualifier and args.qualifier != "$LATEST":
        return _alias_url(args, out)
    if not fn["spec"].get("url"):
        raise CliError(f'function "{args.name}" has no URL (add spec.url to its manifest)')
    print(f"{state.gateway_url}/lambda-url/{url_id(args.name, None, args.namespace)}/", file=out)
    return 0


def _alias_url(args: argparse.Namespace, out: TextIO) -> int:
    client = AdminClient(_state(args))
    aliases = [
        a
        for a in client.list("Alias", args.namespace)
        if a["spec"]["functionName"] == args.name
        and (a["spec"].get("name") or a["metadata"]["name"]) == args.qualifier
    ]
    if not aliases:
        raise CliError(f'function "{args.name}" has no alias "{args.qualifier}"')
    url_ = aliases[0].get("status", {}).get("url")
    if not url_:
        raise CliError(f'alias "{args.qualifier}" has no URL (add spec.url to its manifest)')
    print(url_, file=out)
    return 0


def publish(args: argparse.Namespace, out: TextIO) -> int:
    client = AdminClient(_state(args))
    try:
        result = client.publish(args.namespace, args.name, args.description or "")
    except ApiError as e:
        raise _admin_error(e) from e
    print(result["version"], file=out)
    return 0


def _payload(value: str | None) -> bytes:
    if value is None:
        return b"{}"
    if value.startswith("@"):
        try:
            text = Path(value[1:]).read_bytes()
        except OSError as e:
            raise CliError(f"cannot read payload file {value[1:]}: {e.strerror}", 2) from e
    else:
        text = value.encode()
    try:
        json.loads(text)
    except ValueError as e:
        raise CliError(f"invalid JSON payload: {e}", 2) from e
    return text


def invoke(args: argparse.Namespace, out: TextIO) -> int:
    payload = _payload(args.payload)
    state = _state(args)
    name = args.name
    if args.namespace != "default":
        name = function_arn(state.region, account_for(args.namespace), args.name)
    target = (
        f"{state.gateway_url}/2015-03-31/functions/{urllib.parse.quote(name, safe='')}/invocations"
    )
    if args.qualifier:
        target += "?Qualifier=" + urllib.parse.quote(args.qualifier, safe="")
    headers = {"Content-Type": "application/json"}
    if args.tail:
        headers["X-Amz-Log-Type"] = "Tail"
    if args.event:
        headers["X-Amz-Invocation-Type"] = "Event"
    try:
        resp = signed(state, "POST", target, payload, headers)
    except ApiError as e:
        raise CliError(str(e)) from e
    if resp.status >= 300:
        try:
            body = json.loads(resp.body)
            message = body.get("Message") or body.get("message") or resp.body.decode()
        except ValueError:
            message = resp.body.decode(errors="replace")
        kind = resp.headers.get("x-amzn-ErrorType", f"HTTP {resp.status}")
        raise CliError(f"{kind}: {message}")
    if args.event:  # accepted, durably queued: it runs later
        out.write(resp.headers.get("x-amzn-RequestId", "") + "\n")
        return 0
    if args.tail and resp.headers.get("X-Amz-Log-Result"):
        sys.stderr.write(
            base64.b64decode(resp.headers["X-Amz-Log-Result"]).decode(errors="replace")
        )
    out.write(resp.body.decode(errors="replace") + "\n")
    return 1 if resp.headers.get("X-Amz-Function-Error") else 0


def logs(args: argparse.Namespace, out: TextIO) -> int:
    folder = Path(args.data_dir).expanduser().resolve() / "logs" / args.namespace / args.name
    offsets: dict[Path, int] = {}

    def drain() -> None:
        if not folder.is_dir():
            return
        for path in sorted(folder.glob("*.log"), key=lambda p: p.stat().st_mtime):
            with open(path, "rb") as f:
                f.seek(offsets.get(path, 0))
                data = f.read()
                offsets[path] = f.tell()
            if data:
                out.write(data.decode(errors="replace"))
        out.flush()

    if not folder.is_dir() and not args.follow:
        raise CliError(f'no logs for function "{args.name}" in {folder.parent}')
    drain()
    try:
        while args.follow:
            time.sleep(0.2)
            drain()
    except KeyboardInterrupt:
        pass
    return 0


def keys(args: argparse.Namespace, out: TextIO) -> int:
    client = AdminClient(_state(args))
    try:
        if args.keys_command == "create":
            policy = None
            if args.policy:
                try:
                    policy = json.loads(Path(args.policy).read_text())
                except (OSError, ValueError) as e:
                    raise CliError(f"cannot read policy {args.policy}: {e}", 2) from e
            created = client.create_key(args.name, args.namespace, policy)
            print(f"export AWS_ACCESS_KEY_ID={created['accessKeyId']}", file=out)
            print(f"export AWS_SECRET_ACCESS_KEY={created['secretAccessKey']}", file=out)
            print(f"# principal {created['arn']}", file=out)
        elif args.keys_command == "delete":
            client.delete_key(args.access_key_id)
            print(f"access key {args.access_key_id} deleted", file=out)
        else:
            rows = [["ACCESS KEY", "PRINCIPAL", "NAMESPACE", "CREATED"]]
            rows += [
                [k["accessKeyId"], k["principal"], k["namespace"], k["created"]]
                for k in client.list_keys()
            ]
            widths = [max(len(r[i]) for r in rows) for i in range(4)]
            for r in rows:
                print(
                    "   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip(),
                    file=out,
                )
    except ApiError as e:
        raise _admin_error(e) from e
    return 0


def env(args: argparse.Namespace, out: TextIO) -> int:
    state = _state(args)
    values = {
        "AWS_ENDPOINT_URL_LAMBDA": state.gateway_url,
        "AWS_ACCESS_KEY_ID": state.access_key_id,
        "AWS_SECRET_ACCESS_KEY": state.secret_access_key,
        "AWS_DEFAULT_REGION": state.region,
        "KLAMBDA_REDIS_URL": state.redis_url,
        "KLAMBDA_DATA_DIR": state.data_dir,
    }
    for key, value in values.items():
        print(f"export {key}={shlex.quote(value)}", file=out)
    return 0
