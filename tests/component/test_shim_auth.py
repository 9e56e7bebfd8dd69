"""Attack: calling a function's shim directly, as another tenant's code or pod would.

A shim's gRPC and data ports are reachable from anything that can route to it (any pod when the
cluster does not enforce NetworkPolicy; any local process under ``klambda up``). Without its
version's caller token a call gets UNAUTHENTICATED (gRPC) or an unaccepted welcome and a
closed connection (the data path) and runs nothing: not an invocation (which would skip
SigV4 and policies and could forge ``requestContext.authorizer``), not Provision, not Status.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from pathlib import Path
from typing import Any

import grpc
import pytest

from klambda.api.shim_auth import call_metadata, caller_token
from klambda.gateway.errors import ServiceError
from klambda.gateway.shim_client import ShimClient
from klambda.protos import frames, shim_pb2
from tests.helpers import running_shim, shim_config

KEY = secrets.token_bytes(32)
APP = """COUNT = 0
def handler(event, context):
    global COUNT
    COUNT += 1
    return COUNT
"""


def config(tmp_path: Path) -> Any:
    token = caller_token(KEY, "team-a", "fn", "$LATEST")
    return shim_config(tmp_path, {"app.py": APP}, namespace="team-a", caller_token=token)


async def test_the_gateways_token_opens_the_shim(tmp_path: Path) -> None:
    async with running_shim(config(tmp_path), tmp_path) as shim:
        client = ShimClient(KEY)
        try:
            request = shim_pb2.InvokeRequest(payload=b"{}", request_id="r1")
            answer = await client.invoke(
                shim.data_address, request, 30, ("team-a", "fn", "$LATEST")
            )
            assert answer.payload == b"1" and not answer.error_type
        finally:
            await client.close()


@pytest.mark.parametrize(
    "metadata",
    [
        None,  # no token at all
        call_metadata("0" * 64),  # a made-up one
        call_metadata(caller_token(KEY, "team-b", "fn", "$LATEST")),  # another tenant's shim's
        call_metadata(caller_token(KEY, "team-a", "fn", "1")),  # another version's
        call_metadata(caller_token(secrets.token_bytes(32), "team-a", "fn", "$LATEST")),
    ],
    ids=["none", "made-up", "other-namespace", "other-version", "other-platform-key"],
)
async def test_a_call_without_the_versions_token_runs_nothing(
    tmp_path: Path, metadata: Any
) -> None:
    async with running_shim(config(tmp_path), tmp_path) as shim:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await shim.stub.Status(shim_pb2.StatusRequest(), timeout=10, metadata=metadata)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await shim.stub.Provision(shim_pb2.ProvisionRequest(count=3), metadata=metadata)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        call = shim.stub.InvokeStream(metadata=metadata)
        # refused on its headers, before any request is read: the stream ends at once
        # (writing a request first races the refusal, and the client then fails the write
        # locally with INTERNAL, hiding the server's status)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            async for _ in call:
                pass
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # nothing ran: the first invocation by the gateway is still the first
        client = ShimClient(KEY)
        try:
            request = shim_pb2.InvokeRequest(payload=b"{}", request_id="r1")
            answer = await client.invoke(
                shim.data_address, request, 30, ("team-a", "fn", "$LATEST")
            )
            assert answer.payload == b"1"
            status = await shim.stub.Status(
                shim_pb2.StatusRequest(), metadata=call_metadata(shim.config.caller_token)
            )
            assert status.provisioned_target == 0  # the refused Provision changed nothing
        finally:
            await client.close()


async def test_a_gateway_with_another_key_gets_a_clear_error(tmp_path: Path) -> None:
    async with running_shim(config(tmp_path), tmp_path) as shim:
        client = ShimClient(secrets.token_bytes(32))
        try:
            request = shim_pb2.InvokeRequest(payload=b"{}", request_id="r1")
            with pytest.raises(ServiceError, match="refused the gateway"):
                await client.invoke(shim.data_address, request, 30, ("team-a", "fn", "$LATEST"))
        finally:
            await client.close()


@pytest.mark.parametrize(
    "hello",
    [
        None,  # an invocation before any hello
        "",  # no token
        "0" * 64,  # a made-up one
        caller_token(KEY, "team-b", "fn", "$LATEST"),  # another tenant's shim's
        caller_token(secrets.token_bytes(32), "team-a", "fn", "$LATEST"),
    ],
    ids=["no-hello", "none", "made-up", "other-namespace", "other-platform-key"],
)
async def test_the_data_path_runs_nothing_without_the_versions_token(
    tmp_path: Path, hello: str | None
) -> None:
    """The data port, spoken to directly as an attacker would: an invocation before a hello,
    or after a hello with a wrong token, is never run; the connection is closed."""
    async with running_shim(config(tmp_path), tmp_path) as shim:
        host, _, port = shim.data_address.rpartition(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        if hello is not None:
            token = shim_pb2.StreamHello(token=hello).SerializeToString()
            writer.write(frames.frame(frames.HELLO, token))
            head = await asyncio.wait_for(reader.readexactly(frames.HEAD_BYTES), 10)
            size = int.from_bytes(head[:4], "big")
            body = await reader.readexactly(size - 1)
            [(kind, welcome)] = frames.FrameReader().feed(head + body)
            assert kind == frames.WELCOME
            assert not shim_pb2.StreamWelcome.FromString(welcome).accepted
        request = shim_pb2.InvokeRequest(payload=b"{}", request_id="forged")
        writer.write(frames.frame(frames.INVOKE, request.SerializeToString()))
        with contextlib.suppress(ConnectionResetError):  # closed without an answer
            assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()
        client = ShimClient(KEY)  # nothing ran: the gateway's first invocation is the first
        try:
            ok = shim_pb2.InvokeRequest(payload=b"{}", request_id="r1")
            answer = await client.invoke(shim.data_address, ok, 30, ("team-a", "fn", "$LATEST"))
            assert answer.payload == b"1"
        finally:
            await client.close()
