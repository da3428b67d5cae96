#!/bin/bash
# Record the real-peer packet captures the tests in tests/net6 read (run as root, by hand;
# the tests only read the .pcap files this writes).  Three namespaces:
#   a (host, a0 02:00:00:00:0a:01) -- r (router, r0 / r1, dnsmasq: RA + DHCPv4 + DNS) -- b
# (captured on r0, which is up before a0, to see a's duplicate address detection.)
# a learns its address from dnsmasq's router advertisement (SLAAC, EUI-64), pings through r
# (fragments, hop limit 1 -> time exceeded, 1400 bytes over r's 1280-byte link -> packet too
# big), hits a closed UDP port, takes a DHCPv4 lease (scapy client) and asks dnsmasq DNS
# questions with dig.  Output: tests/net6/data/linux-v6.pcap, dhcp-dnsmasq.pcap, dns-dnsmasq.pcap
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
py="${PYTHON:-python3}"
A=v6cap-a-$$; R=v6cap-r-$$; B=v6cap-b-$$
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.3
    for n in $A $R $B; do ip netns del $n 2>/dev/null || true; done
}
trap cleanup EXIT
for n in $A $R $B; do ip netns add $n; ip -n $n link set lo up; done
ip link add a0 netns $A address 02:00:00:00:0a:01 type veth peer name r0 netns $R address 02:00:00:00:0a:02
ip link add r1 netns $R address 02:00:00:00:0b:02 type veth peer name b0 netns $B address 02:00:00:00:0b:01
ip netns exec $R sysctl -qw net.ipv6.conf.all.forwarding=1
ip -n $R link set r1 mtu 1280; ip -n $B link set b0 mtu 1280
ip -n $R addr add 10.99.1.1/24 dev r0
ip -n $R addr add 2001:db8:1::1/64 dev r0
ip -n $R addr add 2001:db8:2::1/64 dev r1
ip -n $B addr add 2001:db8:2::b/64 dev b0
ip -n $A addr add 10.99.1.50/24 dev a0
ip -n $R link set r0 up
ip netns exec $R tcpdump -q -i r0 -U -s 0 -w "$here/linux-v6.pcap" ip6 2>/dev/null & pids+=($!)
sleep 1
 ip -n $R link set r1 up; ip -n $B link set b0 up
ip -n $B route add default via 2001:db8:2::1
ip -n $A link set a0 up
sleep 3
ip netns exec $R dnsmasq -k --conf-file=/dev/null --pid-file= --interface=r0 --bind-interfaces \
    --enable-ra --dhcp-range=2001:db8:1::,ra-only,64,1h \
    --dhcp-range=10.99.1.100,10.99.1.150,255.255.255.0,1h --dhcp-option=option:router,10.99.1.1 \
    --domain=test --host-record=host.test,10.99.1.8,2001:db8:1::8 --cname=alias.test,host.test \
    $(for i in $(seq 1 12); do printf -- '--txt-record=big.test,%s ' "$(printf 'x%.0s' $(seq 1 60))"; done) \
    --no-resolv --no-hosts --log-facility=/dev/null & pids+=($!)
sleep 6
ip -n $A -6 addr show dev a0 >&2
ip netns exec $A ping -6 -c1 -W2 fe80::ff:fe00:a02%a0 >/dev/null
ip netns exec $A ping -6 -c1 -W2 -s 3000 2001:db8:1::1 >/dev/null
ip netns exec $A ping -6 -c1 -W2 -t 1 2001:db8:2::b >/dev/null || true
ip netns exec $A ping -6 -c1 -W2 -s 1400 2001:db8:2::b >/dev/null || true
ip netns exec $A bash -c 'echo hello > /dev/udp/2001:db8:1::1/9999' || true
sleep 1
kill "${pids[0]}"
ip netns exec $A tcpdump -q -i a0 -U -s 0 -w "$here/dhcp-dnsmasq.pcap" udp port 67 or udp port 68 2>/dev/null & pids+=($!)
sleep 1
ip netns exec $A "$py" - <<'PY'
from scapy.all import BOOTP, DHCP, IP, UDP, Ether, conf, srp1, sendp
conf.checkIPaddr = False
mac = bytes.fromhex("02000000 0a01".replace(" ", ""))
base = Ether(src="02:00:00:00:0a:01", dst="ff:ff:ff:ff:ff:ff") / IP(src="0.0.0.0", dst="255.255.255.255") / UDP(sport=68, dport=67)
boot = BOOTP(chaddr=mac + bytes(10), xid=0x12345678, flags=0x8000)
offer = srp1(base / boot / DHCP(options=[("message-type", "discover"), ("param_req_list", [1, 3, 6, 15, 51, 58, 59]), "end"]), iface="a0", timeout=5, verbose=0)
yi = offer[BOOTP].yiaddr
sid = dict(o for o in offer[DHCP].options if isinstance(o, tuple))["server_id"]
srp1(base / boot / DHCP(options=[("message-type", "request"), ("requested_addr", yi), ("server_id", sid), ("param_req_list", [1, 3, 6, 15, 51, 58, 59]), "end"]), iface="a0", timeout=5, verbose=0)
rel = Ether(src="02:00:00:00:0a:01", dst=offer[Ether].src) / IP(src=yi, dst=sid) / UDP(sport=68, dport=67) / BOOTP(chaddr=mac + bytes(10), xid=0x12345679, ciaddr=yi) / DHCP(options=[("message-type", "release"), ("server_id", sid), "end"])
sendp(rel, iface="a0", verbose=0)
PY
sleep 1
kill "${pids[-1]}"
ip netns exec $A tcpdump -q -i a0 -U -s 0 -w "$here/dns-dnsmasq.pcap" udp port 53 2>/dev/null & pids+=($!)
sleep 1
for q in "host.test A" "host.test AAAA" "alias.test A" "nosuch.test A"; do
    ip netns exec $A dig +tries=1 +time=2 +noedns @10.99.1.1 $q >/dev/null
done
ip netns exec $A dig +tries=1 +time=2 +noedns +ignore +notcp @10.99.1.1 big.test TXT >/dev/null
sleep 1
