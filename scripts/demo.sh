#!/bin/sh
# Install rumpkernel and run its main job on data it makes itself: boot a kernel, build a small
# tree inside it, and show what the kernel did.
set -eu
cd "$(dirname "$0")/.."
python3 -m pip install -q --disable-pip-version-check .
exec python3 -m rumpkernel.apps.demo "$@"
