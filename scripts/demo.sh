#!/bin/sh
# Install rumpkernel and run its main job on data the project ships: build ext4 and FAT disk
# images from the project's own docs/ and src/ folders with no root and no mount, inspect them
# with fsu, copy a file back out, and (when the native tools are present) let e2fsck and
# fsck.fat judge the images; then the network faction: two kernel processes on a shmif bus
# (a host file, no root), configured with rump.ifconfig, ping and UDP between them, the bus
# summarised by shmif_dumpbus.
set -eu
cd "$(dirname "$0")/.."
python3 -m pip install -q --disable-pip-version-check .
out="${1:-${TMPDIR:-/tmp}/rumpkernel-demo}"
rm -rf "$out" && mkdir -p "$out/tree"
cp -r docs src "$out/tree/"
ln -s docs/architecture.md "$out/tree/ARCHITECTURE"
echo "== fsu makefs -t ext4: $out/demo-ext4.img from $out/tree"
fsu makefs -t ext4 -L rumpdemo "$out/demo-ext4.img" "$out/tree"
fsu info "$out/demo-ext4.img"
fsu ls -l "$out/demo-ext4.img" /
fsu cat "$out/demo-ext4.img" /ARCHITECTURE | head -n 3
fsu get "$out/demo-ext4.img" /docs/syscalls.md "$out/syscalls.md"
cmp "$out/syscalls.md" docs/syscalls.md && echo "fsu get: byte-identical copy"
echo "== fsu makefs -t fat: $out/demo-fat.img"
fsu makefs -t fat -L RUMPDEMO "$out/demo-fat.img" "$out/tree/docs"
fsu ls -l "$out/demo-fat.img" /
fsu df -h "$out/demo-fat.img"
if command -v e2fsck >/dev/null 2>&1; then e2fsck -fn "$out/demo-ext4.img"; fi
if command -v fsck.fat >/dev/null 2>&1; then fsck.fat -n "$out/demo-fat.img"; fi
echo "== a kernel inside this process"
python3 -m rumpkernel.apps.demo
echo "== the network faction"
sh scripts/demo_net.sh
