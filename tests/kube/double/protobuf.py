"""Request bodies in Kubernetes' protobuf encoding, for the kinds clients send that way to the
double: Secrets and ConfigMaps (client-go's typed clients do, Helm's release storage among
them), and the DeleteOptions of their deletions. Enough of the wire format to read them into
the JSON shape the double stores; answers stay JSON, which client-go reads whatever it asked
for.

The envelope (k8s.io/apimachinery runtime.Unknown): the magic ``k8s\\0``, then typeMeta (1:
apiVersion, kind), raw (2: the object), contentEncoding (3), contentType (4). Field numbers
are those of k8s.io/api/core/v1/generated.proto and apimachinery's meta/v1."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

MAGIC = b"k8s\x00"


class Unsupported(ValueError):
    """A protobuf body of a kind the double cannot read (a real server would): 415."""


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        if i >= len(buf):
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        out |= (b & 0x7F) << shift
        if not b & 0x80:
            return out, i
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            size, i = _varint(buf, i)
            value, i = buf[i : i + size], i + size
        elif wire == 1:
            value, i = buf[i : i + 8], i + 8
        elif wire == 5:
            value, i = buf[i : i + 4], i + 4
        else:
            raise ValueError(f"wire type {wire} is not supported")
        yield number, value


def _text(value: int | bytes) -> str:
    assert isinstance(value, bytes)
    return value.decode()


def _entry(value: int | bytes) -> tuple[str, bytes]:
    assert isinstance(value, bytes)
    parts = {n: v for n, v in _fields(value)}
    key, item = parts.get(1, b""), parts.get(2, b"")
    assert isinstance(key, bytes) and isinstance(item, bytes)
    return key.decode(), item


def _meta(buf: bytes) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    names = {1: "name", 2: "generateName", 3: "namespace", 5: "uid", 6: "resourceVersion"}
    for number, value in _fields(buf):
        if number in names and _text(value):
            meta[names[number]] = _text(value)
        elif number in (11, 12):  # labels, annotations
            key, item = _entry(value)
            meta.setdefault("labels" if number == 11 else "annotations", {})[key] = item.decode()
        elif number == 14:
            meta.setdefault("finalizers", []).append(_text(value))
    return meta


def _object(kind: str, buf: bytes) -> dict[str, Any]:
    obj: dict[str, Any] = {"apiVersion": "v1", "kind": kind}
    for number, value in _fields(buf):
        assert isinstance(value, (bytes, int))
        if number == 1 and isinstance(value, bytes):
            obj["metadata"] = _meta(value)
        elif number == 2:  # data: base64 in JSON (Secret), text (ConfigMap)
            key, item = _entry(value)
            text = base64.b64encode(item).decode() if kind == "Secret" else item.decode()
            obj.setdefault("data", {})[key] = text
        elif number == 3 and kind == "Secret":
            obj["type"] = _text(value)
        elif number == 3 and kind == "ConfigMap":  # binaryData
            key, item = _entry(value)
            obj.setdefault("binaryData", {})[key] = base64.b64encode(item).decode()
        elif number == 4 and kind == "Secret":
            key, item = _entry(value)
            obj.setdefault("stringData", {})[key] = item.decode()
        elif number == 5 and kind == "Secret" and isinstance(value, int):
            obj["immutable"] = bool(value)
    return obj


def _delete_options(buf: bytes) -> dict[str, Any]:
    """meta/v1 DeleteOptions: gracePeriodSeconds (1), preconditions (2: uid 1, resourceVersion
    2), orphanDependents (3), propagationPolicy (4), dryRun (5)."""
    options: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions"}
    for number, value in _fields(buf):
        if number == 1 and isinstance(value, int):
            options["gracePeriodSeconds"] = value
        elif number == 2 and isinstance(value, bytes):
            fields = {1: "uid", 2: "resourceVersion"}
            options["preconditions"] = {
                fields[n]: _text(v) for n, v in _fields(value) if n in fields
            }
        elif number == 3 and isinstance(value, int):
            options["orphanDependents"] = bool(value)
        elif number == 4:
            options["propagationPolicy"] = _text(value)
        elif number == 5:
            options.setdefault("dryRun", []).append(_text(value))
    return options


def decode(body: bytes) -> dict[str, Any]:
    """The object a protobuf request carries; ValueError for anything else."""
    if not body.startswith(MAGIC):
        raise ValueError("not a Kubernetes protobuf message (no k8s\\0 prefix)")
    envelope = dict(_fields(body[len(MAGIC) :]))
    type_meta = envelope.get(1, b"")
    raw = envelope.get(2, b"")
    assert isinstance(type_meta, bytes) and isinstance(raw, bytes)
    meta = {n: _text(v) for n, v in _fields(type_meta)}
    api_version, kind = meta.get(1, ""), meta.get(2, "")
    if kind == "DeleteOptions" and api_version in ("v1", "meta.k8s.io/v1"):
        return _delete_options(raw)
    if api_version != "v1" or kind not in ("Secret", "ConfigMap"):
        raise Unsupported(f"protobuf bodies of {api_version or '?'}/{kind or '?'} are not read")
    return _object(kind, raw)
