"""Watch: synthetic ADDED, resume from a resourceVersion, 410 Expired, bookmarks, timeouts,
selector transitions."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from tests.kube.client import Kube, Reply, configmap
from tests.kube.double import KubeApiDouble

CM = "/api/v1/namespaces/default/configmaps"


def kube_rv(reply: Reply) -> int:
    return int(reply.body["metadata"]["resourceVersion"])


async def test_watch_without_resource_version_starts_with_synthetic_added(kube: Kube) -> None:
    await kube.post(CM, configmap("a"))
    await kube.post(CM, configmap("b"))
    events = await kube.watch_all(CM, timeoutSeconds="1")
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "a"),
        ("ADDED", "b"),
    ]
    assert events[0]["object"]["kind"] == "ConfigMap" and events[0]["object"]["apiVersion"] == "v1"


async def test_watch_from_a_resource_version_sends_only_later_events(kube: Kube) -> None:
    first = (await kube.post(CM, configmap("a"))).body
    await kube.patch(f"{CM}/a", {"data": {"k": "2"}})
    await kube.post(CM, configmap("b"))
    await kube.delete(f"{CM}/a")
    await kube.post(CM, configmap("end"))
    rv = first["metadata"]["resourceVersion"]
    events = await kube.events_until(CM, "end", resourceVersion=rv)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("MODIFIED", "a"),
        ("ADDED", "b"),
        ("DELETED", "a"),
    ]
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert rvs == sorted(rvs) and rvs[0] > int(rv)


async def test_live_events_follow(kube: Kube) -> None:
    async def writer() -> None:
        await asyncio.sleep(0.1)
        await kube.post(CM, configmap("live"))
        await kube.patch(f"{CM}/live", {"data": {"k": "x"}})
        await kube.post(CM, configmap("end"))

    task = asyncio.create_task(writer())
    events = await kube.events_until(CM, "end", resourceVersion=str(kube_rv(await kube.get(CM))))
    await task
    assert [e["type"] for e in events if e["object"]["metadata"]["name"] == "live"] == [
        "ADDED",
        "MODIFIED",
    ]


async def test_too_old_resource_version_is_410_expired_after_200() -> None:
    async with KubeApiDouble(history_size=3) as api, aiohttp.ClientSession() as session:
        kube = Kube(session, api.url)
        first = (await kube.post(CM, configmap("a"))).body
        for i in range(5):
            await kube.patch(f"{CM}/a", {"data": {"k": str(i)}})
        events = await kube.watch_all(
            CM, resourceVersion=first["metadata"]["resourceVersion"], timeoutSeconds="5"
        )
        assert len(events) == 1
        error = events[0]
        assert error["type"] == "ERROR"
        status = error["object"]
        assert (status["kind"], status["code"], status["reason"], status["status"]) == (
            "Status",
            410,
            "Expired",
            "Failure",
        )
        assert status["message"].startswith(
            f"too old resource version: {first['metadata']['resourceVersion']} ("
        )
        latest = (await kube.get(CM)).body["metadata"]["resourceVersion"]
        await kube.post(CM, configmap("end"))
        assert await kube.events_until(CM, "end", resourceVersion=latest) == []


async def test_bookmarks_only_when_allowed_and_timeout_closes_the_stream() -> None:
    async with KubeApiDouble(bookmark_interval=0.2) as api, aiohttp.ClientSession() as session:
        kube = Kube(session, api.url)
        await kube.post(CM, configmap("a"))
        loop = asyncio.get_running_loop()
        started = loop.time()
        plain = await kube.watch_all(CM, resourceVersion="0", timeoutSeconds="1")
        assert 0.9 <= loop.time() - started < 3
        assert [e["type"] for e in plain] == ["ADDED"]
        marked = await kube.watch_all(CM, allowWatchBookmarks="true", timeoutSeconds="1")
        bookmarks = [e for e in marked if e["type"] == "BOOKMARK"]
        assert len(bookmarks) >= 2
        assert bookmarks[0]["object"] == {
            "kind": "ConfigMap",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": str(api.resource_version)},
        }


async def test_send_initial_events_ends_with_an_annotated_bookmark(kube: Kube) -> None:
    await kube.post(CM, configmap("a"))
    params = {
        "sendInitialEvents": "true",
        "resourceVersionMatch": "NotOlderThan",
        "allowWatchBookmarks": "true",
    }
    events = []
    async for event in kube.stream(CM, **params):
        events.append(event)
        if len(events) == 2:
            break
    assert events[0]["type"] == "ADDED"
    assert events[1]["type"] == "BOOKMARK"
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


async def test_selectors_apply_to_watches_with_transitions(kube: Kube) -> None:
    start = (await kube.get(CM)).body["metadata"]["resourceVersion"]
    await kube.post(CM, configmap("a", tier="web"))
    await kube.post(CM, configmap("b", tier="db"))
    await kube.patch(f"{CM}/b", {"metadata": {"labels": {"tier": "web"}}})  # moves in: ADDED
    await kube.patch(f"{CM}/a", {"metadata": {"labels": {"tier": "db"}}})  # moves out: DELETED
    await kube.post(CM, configmap("end", tier="web"))
    events = await kube.events_until(CM, "end", resourceVersion=start, labelSelector="tier=web")
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "a"),
        ("ADDED", "b"),
        ("DELETED", "a"),
    ]
    by_name = await kube.events_until(CM, "end", fieldSelector="metadata.name!=a")
    assert [e["object"]["metadata"]["name"] for e in by_name] == ["b"]


async def test_watch_parameter_is_parsed_like_go(kube: Kube) -> None:
    await kube.post(CM, configmap("a"))
    for value in ("True", "1", "true", "t"):
        status, line = await kube.first_line(CM, watch=value)
        assert status == 200
        assert line.startswith('{"type":"ADDED"'), value
    listing = await kube.get(CM, watch="false")
    assert listing.body["kind"] == "ConfigMapList"
    bad = await kube.get(CM, watch="yes")
    assert bad.status == 400


async def test_all_namespaces_and_cluster_scoped_watches(kube: Kube) -> None:
    await kube.post(
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}},
    )
    await kube.post("/api/v1/namespaces/other/configmaps", configmap("x"))
    await kube.post(CM, configmap("y"))
    await kube.post(CM, configmap("z-end"))
    everywhere = await kube.events_until("/api/v1/configmaps", "z-end", resourceVersion="1")
    assert [e["object"]["metadata"]["name"] for e in everywhere] == ["x", "y"]
    _, line = await kube.first_line(
        "/api/v1/namespaces", watch="1", fieldSelector="metadata.name=other"
    )
    assert '"name":"other"' in line


async def test_watch_as_table_for_kubectl_get_watch(kube: Kube) -> None:
    await kube.post(CM, configmap("a"))
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    params = {"watch": "true", "timeoutSeconds": "5"}
    async with kube.session.get(kube.url + CM, params=params, headers={"Accept": accept}) as reply:
        first = json.loads(await reply.content.readline())
    assert first["type"] == "ADDED"
    table = first["object"]
    assert table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Age"]
    assert table["rows"][0]["cells"][0] == "a"
