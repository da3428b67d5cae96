#!/bin/sh
# The network faction in one minute, no root needed: two kernels in two rump_server processes
# on one shmif bus (a host file), configured with rump.ifconfig; a ping and a UDP exchange
# between them; the bus's traffic summarised by shmif_dumpbus (and handed to tcpdump as pcap
# when tcpdump is installed).  Uses only addresses on the private bus (10.99.0.0/24).
set -eu
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
tool() { "$PY" -m rumpkernel.apps.rump_net "$@"; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/rumpnet-demo.XXXXXX")
A="unix://$dir/a.sock"; B="unix://$dir/b.sock"; BUS="$dir/bus"
cleanup() {
    RUMP_SERVER=$A "$PY" -m rumpkernel.apps.rumptools halt >/dev/null 2>&1 || true
    RUMP_SERVER=$B "$PY" -m rumpkernel.apps.rumptools halt >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM

echo "== two kernels, one bus file ($BUS)"
"$PY" -m rumpkernel.apps.rump_server "$A"
"$PY" -m rumpkernel.apps.rump_server "$B"
i=1
for url in "$A" "$B"; do
    export RUMP_SERVER=$url
    tool ifconfig shmif0 create
    tool ifconfig shmif0 linkstr "$BUS"
    tool ifconfig shmif0 inet "10.99.0.$i/24" up
    i=$((i + 1))
done
RUMP_SERVER=$A tool ifconfig shmif0

echo "== rump.ping from 10.99.0.1 to 10.99.0.2"
RUMP_SERVER=$A tool ping -c 3 -i 0.2 10.99.0.2

echo "== UDP: kernel B listens on port 7777, kernel A sends, B answers"
"$PY" - "$A" "$B" <<'PYEOF'
import sys, rumpkernel
a, b = (rumpkernel.connect(u, autofork=False) for u in sys.argv[1:3])
with b.socket.socket(b.socket.AF_INET, b.socket.SOCK_DGRAM) as srv, \
        a.socket.socket(a.socket.AF_INET, a.socket.SOCK_DGRAM) as cli:
    srv.bind(("0.0.0.0", 7777))
    cli.settimeout(5)
    srv.settimeout(5)
    cli.sendto(b"hello from kernel A", ("10.99.0.2", 7777))
    data, peer = srv.recvfrom(100)
    print(f"B got {data!r} from {peer[0]}:{peer[1]}")
    srv.sendto(data.upper(), peer)
    print(f"A got {cli.recv(100)!r}")
a.close(); b.close()
PYEOF

echo "== the interfaces' counters (rump.netstat -i on A)"
RUMP_SERVER=$A tool netstat -i
RUMP_SERVER=$A tool arp -a

echo "== the bus, as shmif_dumpbus sees it"
"$PY" -m rumpkernel.apps.shmif_dumpbus -h "$BUS"
"$PY" -m rumpkernel.apps.shmif_dumpbus "$BUS"
if command -v tcpdump >/dev/null 2>&1; then
    echo "== the bus as pcap, read by tcpdump"
    "$PY" -m rumpkernel.apps.shmif_dumpbus -p "$dir/bus.pcap" "$BUS"
    tcpdump -n -r "$dir/bus.pcap" 2>/dev/null | head -20
fi
