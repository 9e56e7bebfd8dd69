"""aws:SourceIp through the gateway's HTTP app: behind a trusted proxy the client's address
comes from X-Forwarded-For, from anyone else the header is ignored (a policy on the address
cannot be dodged by writing the header)."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer

from klambda.api.policy import parse_policy
from klambda.api.routes import FunctionRoute, VersionTarget
from klambda.api.types import FunctionUrl
from klambda.gateway.app import create_app
from klambda.gateway.routing import RoutingTable
from klambda.gateway.settings import GatewaySettings

ONLY_FROM_OFFICE = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Deny",
            "Principal": "*",
            "Action": "lambda:InvokeFunctionUrl",
            "Resource": "*",
            "Condition": {"NotIpAddress": {"aws:SourceIp": "198.51.100.0/24"}},
        }
    ],
}


class NoKeys:
    def lookup(self, access_key_id: str) -> None:
        return None


def table() -> RoutingTable:
    t = RoutingTable()
    t.publish(
        FunctionRoute(
            "default",
            "office",
            "arn:aws:lambda:us-east-1:000000000000:function:office",
            url=FunctionUrl(auth_type="NONE"),
            versions={"$LATEST": VersionTarget("$LATEST", problem="not running here")},
            policy=parse_policy(ONLY_FROM_OFFICE, resource_policy=True),
            account="000000000000",
        )
    )
    t.mark_synced()
    return t


async def status_from(trusted: tuple[str, ...], forwarded: str) -> int:
    app = create_app(GatewaySettings(trusted_proxies=trusted), table(), NoKeys())  # type: ignore[arg-type]
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        r = await client.get("/lambda-url/office/", headers={"X-Forwarded-For": forwarded})
        return r.status


async def test_a_forwarded_address_counts_only_behind_a_trusted_proxy() -> None:
    # allowed through (to a function that is not running: 502, not 403)
    assert await status_from(("127.0.0.0/8",), "198.51.100.7") == 502
    assert await status_from(("127.0.0.0/8",), "203.0.113.1") == 403  # not the office
    # the peer (127.0.0.1) is no trusted proxy: its X-Forwarded-For is a client's claim
    assert await status_from((), "198.51.100.7") == 403
