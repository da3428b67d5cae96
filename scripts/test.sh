#!/bin/sh
# Install everything the tests need (native oracle tools from Debian, Python packages) and run
# the whole test suite.  Exits non-zero on any failure.  Extra arguments go to pytest.
set -eu
cd "$(dirname "$0")/.."
pkgs=""
need() { command -v "$1" >/dev/null 2>&1 || pkgs="$pkgs $2"; }
need mke2fs e2fsprogs
need e2fsck e2fsprogs
need debugfs e2fsprogs
need fuse2fs fuse2fs
need mkfs.fat dosfstools
need fsck.fat dosfstools
need mcopy mtools
need fusermount3 fuse3
need stress-ng stress-ng
need fio fio
need ip iproute2
need sfdisk fdisk
need sgdisk gdisk
need setfacl acl
need tcpdump tcpdump
need tshark tshark
need socat socat
need nc netcat-openbsd
need curl curl
need iperf3 iperf3
need ethtool ethtool
need ping iputils-ping
need dnsmasq dnsmasq
if [ -n "$pkgs" ]; then
    if [ "$(id -u)" -ne 0 ]; then echo "need root to install:$pkgs" >&2; exit 2; fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $pkgs >/dev/null
fi
python3 -m pip install -q --disable-pip-version-check -e '.[test]'
RUMPKERNEL_REQUIRE_ORACLES=1 exec python3 -m pytest -q "$@"
