#!/usr/bin/env bash
# Builds (and with --push, pushes) klambda's images from the repository root:
#   charts/images/build.sh REGISTRY [VERSION] [--push]
# e.g. charts/images/build.sh registry.example.com/klambda 0.1.0 --push, then
#   helm install klambda charts/klambda --set image.repository=REGISTRY/klambda \
#     --set runtimes.images.python3.12=REGISTRY/runtime-python:3.12 ...
# Each runtime image's Python is the one its runtime names (PY below).
set -euo pipefail
cd "$(dirname "$0")/../.."
registry=${1:?usage: build.sh REGISTRY [VERSION] [--push]}
version=${2:-$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)}
push=${3:-}
build() {  # tag, dockerfile, python version
  docker build -f "charts/images/$2" --build-arg "PY=$3" -t "$1" .
  if [ "$push" = "--push" ]; then docker push "$1"; fi
}
build "$registry/klambda:$version" Dockerfile 3.12
for runtime in python3.11 python3.12 python3.13 python3.14; do
  build "$registry/runtime-python:${runtime#python}" Dockerfile.runtime "${runtime#python}"
done
build "$registry/runtime-provided:al2023" Dockerfile.runtime 3.12
