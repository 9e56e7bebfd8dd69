"""The image recipes (charts/images), checked without a Docker engine: every COPY source exists
and every package is copied, the final stage runs as uid 65532 with nothing but wheels carried
over, each ENTRYPOINT + CMD starts (``--help``), and build.sh builds every runtime image the
operator names with the Python its runtime says (run with a stand-in ``docker`` that records)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from klambda.controller.kube.builders import KubeSettings

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "charts" / "images"
DOCKERFILES = ("Dockerfile", "Dockerfile.runtime")


def instructions(name: str) -> list[tuple[str, str]]:
    out = []
    for line in (IMAGES / name).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def final_stage(steps: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last:]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_every_copy_source_exists_and_every_package_is_copied(name: str) -> None:
    sources = set()
    for word, rest in instructions(name):
        if word == "COPY" and not rest.startswith("--from"):
            *paths, _ = shlex.split(rest)
            for path in paths:
                assert (REPO / path).exists(), f"{name}: COPY {path}: no such path"
                sources.add(path)
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    package_dirs = set(config["tool"]["setuptools"]["package-dir"].values())
    assert package_dirs <= sources, f"{name} leaves out {package_dirs - sources}"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_the_final_stage_is_non_root_and_carries_only_wheels(name: str) -> None:
    final = final_stage(instructions(name))
    assert ("USER", "65532:65532") in final
    copies = [rest for word, rest in final if word == "COPY"]
    assert copies and all(c.startswith("--from=build /wheels") for c in copies)
    runs = " ".join(rest for word, rest in final if word == "RUN")
    for tool in ("gcc", "build-essential", "apt-get install"):
        assert tool not in runs, f"{name}: the final stage installs {tool}"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_the_entrypoint_starts(name: str) -> None:
    import json

    steps = dict(final_stage(instructions(name)))
    command = json.loads(steps["ENTRYPOINT"]) + json.loads(steps["CMD"])
    # the image's console script and interpreter, as this checkout installs them
    if command[0] == "klambda":
        command = [sys.executable, "-m", "klambda.cli.main", *command[1:]]
    elif command[0] == "python3":
        command = [sys.executable, *command[1:]]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "usage" in done.stdout.lower()


def test_build_sh_builds_each_runtime_image_with_its_python(tmp_path: Path) -> None:
    log = tmp_path / "docker.log"
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "docker").write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    (fake / "docker").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}
    done = subprocess.run(
        [str(IMAGES / "build.sh"), "reg.example", "9.9", "--push"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    builds: dict[str, str] = {}
    pushed = set()
    for line in log.read_text().splitlines():
        args = line.split()
        if args[0] == "build":
            tag = args[args.index("-t") + 1]
            python = next(a.split("=", 1)[1] for a in args if a.startswith("PY="))
            builds[tag] = python
        elif args[0] == "push":
            pushed.add(args[1])
    assert builds["reg.example/klambda:9.9"] and pushed == set(builds)
    for runtime, image in KubeSettings().images.items():
        if runtime == "python3.10":
            continue  # needs a second interpreter for klambda (docs/install-kubernetes.md)
        name = "reg.example/" + image.split("/", 2)[-1]
        assert name in builds, f"{runtime}: build.sh does not build {name}"
        if runtime.startswith("python"):
            assert builds[name] == runtime.removeprefix("python")  # its Python
