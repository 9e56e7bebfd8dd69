"""Code sources: inline files, ConfigMaps and zip archives (local and over HTTP)."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import zipfile
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from klambda.api.types import Code
from klambda.controller.code import CodeFetchFailed, files_sha256, materialize


def make_zip(files: dict[str, tuple[str, int]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, (content, mode) in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            zf.writestr(info, content)
    return buf.getvalue()


async def test_inline_files_and_bootstrap_mode(tmp_path: Path) -> None:
    code = Code(inline={"bootstrap": "#!/bin/sh\n", "lib/util.py": "X = 1\n"})
    bundle = await materialize(code, tmp_path, {})
    assert (bundle.ref / "lib/util.py").read_text() == "X = 1\n"
    assert os.access(bundle.ref / "bootstrap", os.X_OK)
    assert bundle.sha256 == files_sha256(code.inline or {})
    again = await materialize(code, tmp_path, {})
    assert again.ref == bundle.ref  # content-addressed: shared, not rewritten


async def test_zip_from_a_path_keeps_modes_and_hashes_like_lambda(tmp_path: Path) -> None:
    archive = make_zip({"app.py": ("print(1)\n", 0o644), "run.sh": ("#!/bin/sh\n", 0o755)})
    path = tmp_path / "code.zip"
    path.write_bytes(archive)
    bundle = await materialize(Code(zip=str(path)), tmp_path / "root", {})
    assert (bundle.ref / "app.py").read_text() == "print(1)\n"
    assert os.access(bundle.ref / "run.sh", os.X_OK)
    assert not os.access(bundle.ref / "app.py", os.X_OK)
    assert bundle.sha256 == base64.b64encode(hashlib.sha256(archive).digest()).decode()


async def test_zip_over_http(tmp_path: Path) -> None:
    archive = make_zip({"app.py": ("X = 2\n", 0o644)})

    async def serve(request: web.Request) -> web.Response:
        if request.path == "/code.zip":
            return web.Response(body=archive)
        return web.Response(status=404)

    app = web.Application()
    app.router.add_get("/{tail:.*}", serve)
    async with TestServer(app, host="127.0.0.1") as server:
        bundle = await materialize(Code(zip=str(server.make_url("/code.zip"))), tmp_path, {})
        assert (bundle.ref / "app.py").read_text() == "X = 2\n"
        with pytest.raises(CodeFetchFailed, match="answered HTTP 404"):
            await materialize(Code(zip=str(server.make_url("/missing.zip"))), tmp_path, {})


@pytest.mark.parametrize(
    ("archive", "message"),
    [
        (make_zip({"../escape.py": ("x", 0o644)}), "points outside the code directory"),
        (b"not a zip at all", "is not a valid zip archive"),
    ],
)
async def test_bad_archives_are_refused(tmp_path: Path, archive: bytes, message: str) -> None:
    path = tmp_path / "bad.zip"
    path.write_bytes(archive)
    with pytest.raises(CodeFetchFailed, match=message):
        await materialize(Code(zip=str(path)), tmp_path / "root", {})
    assert not (tmp_path / "escape.py").exists()


async def test_missing_zip_and_config_map(tmp_path: Path) -> None:
    with pytest.raises(CodeFetchFailed, match="cannot read zip"):
        await materialize(Code(zip=str(tmp_path / "nope.zip")), tmp_path, {})
    with pytest.raises(CodeFetchFailed, match='ConfigMap "src" not found'):
        await materialize(Code(config_map="src"), tmp_path, {})
    bundle = await materialize(Code(config_map="src"), tmp_path, {"src": {"app.py": "Y = 3\n"}})
    assert (bundle.ref / "app.py").read_text() == "Y = 3\n"
