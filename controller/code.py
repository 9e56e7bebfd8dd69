"""The one module that fetches a Function's ``code``: inline files, a ConfigMap, or a zip.

Both platforms use it. Locally the code becomes a directory of files (the environment's
LAMBDA_TASK_ROOT): content-addressed (``<root>/<sha256 hex>``), written to a temporary name and
renamed into place, so a directory that exists is complete and shared by every shim that runs
the same code. On Kubernetes it becomes the files of a ConfigMap (``fetch_files``), as bytes, so
binary files survive. ``CodeSha256`` is Lambda's everywhere: base64 SHA-256 of the zip archive,
or for inline and ConfigMap code, of the sorted file names and contents.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Generic, TypeVar

import aiohttp

from klambda.api.types import Code
from klambda.controller.downloads import Archive, CodeFetchFailed, download

MAX_ZIP_BYTES = 250 * 1024 * 1024  # Lambda's unzipped limit, applied to the download too
EXECUTABLE_NAMES = frozenset({"bootstrap"})


Ref = TypeVar("Ref")


@dataclass(frozen=True)
class CodeBundle(Generic[Ref]):
    """Code a platform has made ready for its shims.

    ``ref`` is the platform's own handle on it (locally the directory; on Kubernetes the files
    for the code ConfigMap, or nothing for an image). The controller never looks inside: it
    hands the bundle back to the same platform's ``start``."""

    sha256: str
    """Base64 SHA-256, Lambda's CodeSha256."""
    size: int
    """Bytes of code (Lambda's CodeSize)."""
    ref: Ref
    files: frozenset[str] | None = None
    """Relative paths of the code's files, when known (None: an image, whose code is opaque)."""


def files_sha256(files: Mapping[str, str | bytes]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        content = files[name]
        h.update(name.encode() + b"\0")
        h.update((content.encode() if isinstance(content, str) else content) + b"\0")
    return base64.b64encode(h.digest()).decode()


async def materialize(
    code: Code,
    root: Path,
    config_maps: Mapping[str, Mapping[str, str]],
    session: aiohttp.ClientSession | None = None,
    allowed_hosts: tuple[str, ...] = ("*",),
) -> CodeBundle[Path]:
    """Fetches and unpacks ``code`` under ``root``; returns its directory and CodeSha256."""
    if code.inline is not None:
        return await asyncio.to_thread(_write_files, root, dict(code.inline))
    if code.config_map is not None:
        data = config_maps.get(code.config_map)
        if data is None:
            raise CodeFetchFailed(f'ConfigMap "{code.config_map}" not found')
        return await asyncio.to_thread(_write_files, root, dict(data))
    assert code.zip is not None
    archive = await download(code.zip, MAX_ZIP_BYTES, allowed_hosts, session)
    try:
        return await asyncio.to_thread(_unpack_zip, root, archive, code.zip)
    finally:
        await asyncio.to_thread(archive.discard)


def zip_files(archive: Path, where: str, limit: int = MAX_ZIP_BYTES) -> dict[str, bytes]:
    """The files of a zip archive by path, as bytes (binary files included), with the limits
    and path checks of unpacking it to disk."""
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as e:
        raise CodeFetchFailed(f"{where} is not a valid zip archive") from e
    files, total = {}, 0
    with zf:
        for info in zf.infolist():
            total += info.file_size
            if total > limit:
                raise CodeFetchFailed(f"{where} unpacks to more than {limit} bytes")
            _safe_target(Path("/"), info.filename)
            if not info.is_dir():
                files[info.filename] = zf.read(info)
    return files


@dataclass(frozen=True)
class FetchedFiles:
    """Code as files in memory (for a ConfigMap), with Lambda's CodeSha256 and CodeSize."""

    files: dict[str, bytes]
    sha256: str
    size: int


async def fetch_files(
    code: Code,
    config_maps: Mapping[str, Mapping[str, str]],
    limit: int = MAX_ZIP_BYTES,
    allowed_hosts: tuple[str, ...] = ("*",),
) -> FetchedFiles:
    """Inline, ConfigMap or zip code as files in memory (a zip: at most ``limit`` bytes,
    packed and unpacked, from an allowed host); raises CodeFetchFailed."""
    if code.inline is not None or code.config_map is not None:
        if code.inline is not None:
            text = dict(code.inline)
        else:
            data = config_maps.get(code.config_map or "")
            if data is None:
                raise CodeFetchFailed(f'ConfigMap "{code.config_map}" not found')
            text = dict(data)
        files = {name: content.encode() for name, content in text.items()}
        return FetchedFiles(files, files_sha256(files), sum(len(v) for v in files.values()))
    assert code.zip is not None
    archive = await download(code.zip, limit, allowed_hosts)
    try:
        files = await asyncio.to_thread(zip_files, archive.path, code.zip, limit)
    finally:
        await asyncio.to_thread(archive.discard)
    return FetchedFiles(files, archive.sha256, archive.size)


def _write_files(root: Path, files: dict[str, str]) -> CodeBundle[Path]:
    sha = files_sha256(files)

    def fill(tmp: Path) -> None:
        for name, content in files.items():
            target = _safe_target(tmp, name)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
            if PurePosixPath(name).name in EXECUTABLE_NAMES:
                target.chmod(0o755)

    directory = _publish(root, sha, fill)
    return code_bundle(directory, sha)


def _unpack_zip(root: Path, archive: Archive, where: str) -> CodeBundle[Path]:
    sha = archive.sha256
    try:
        zf = zipfile.ZipFile(archive.path)
    except zipfile.BadZipFile as e:
        raise CodeFetchFailed(f"{where} is not a valid zip archive") from e

    def fill(tmp: Path) -> None:
        total = 0
        for info in zf.infolist():
            total += info.file_size
            if total > MAX_ZIP_BYTES:
                raise CodeFetchFailed(f"{where} unpacks to more than {MAX_ZIP_BYTES} bytes")
            target = _safe_target(tmp, info.filename)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            mode = (info.external_attr >> 16) & 0o777
            if mode & stat.S_IXUSR or PurePosixPath(info.filename).name in EXECUTABLE_NAMES:
                target.chmod(0o755)

    with zf:
        directory = _publish(root, sha, fill)
        return replace(code_bundle(directory, sha), size=archive.size)  # Lambda: the zip's size


async def prepare_local(
    code: Code,
    root: Path,
    config_maps: Mapping[str, Mapping[str, str]],
    pinned_sha256: str | None,
    version: str,
) -> CodeBundle[Path]:
    """Code on this machine's disk; a published version's exact code when ``pinned_sha256``."""
    if pinned_sha256 is None:
        return await materialize(code, root, config_maps)
    pinned = root / base64.b64decode(pinned_sha256).hex()
    if await asyncio.to_thread(pinned.is_dir):
        return await asyncio.to_thread(code_bundle, pinned, pinned_sha256)
    bundle = await materialize(code, root, config_maps)
    if bundle.sha256 != pinned_sha256:
        raise CodeChanged(
            f"the code of version {version} is gone and its source now holds other code"
        )
    return bundle


class CodeChanged(CodeFetchFailed):
    """A version's frozen code can no longer be had: its source changed (permanent)."""


def code_bundle(directory: Path, sha256: str) -> CodeBundle[Path]:
    """The bundle of code in place in ``directory`` (blocking: call it in a thread)."""
    files = [p for p in directory.rglob("*") if p.is_file()]
    return CodeBundle(
        sha256,
        sum(p.stat().st_size for p in files),
        directory,
        files=frozenset(p.relative_to(directory).as_posix() for p in files),
    )


def _safe_target(base: Path, name: str) -> Path:
    rel = PurePosixPath(name)
    if rel.is_absolute() or ".." in rel.parts:
        raise CodeFetchFailed(f"refusing file path {name!r}: it points outside the code directory")
    return base.joinpath(*rel.parts)


def _publish(root: Path, sha: str, fill: Callable[[Path], None]) -> Path:
    digest = base64.b64decode(sha).hex()
    final = root / digest
    if final.is_dir():
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        fill(tmp)
        os.chmod(tmp, 0o755)
        try:
            tmp.rename(final)
        except OSError:  # another writer published the same code first
            if not final.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final
