"""The socket test suite of tests/net (test_udp.py, test_sockapi.py, and test_tcp_sockets.py
once the kernel has TCP sockets) and tests/net6 (test_sock6.py) run over sockin, local and
remote: the same test functions, with this directory's ``knet`` (a sockin kernel).  Tests of
what sockin does not have (the kernel's interfaces, ICMP, raw sockets, the kernel stack's
counters and sysctl nodes) and of what the host decides differently (error numbers for unusable
IPv6 destinations, TCP state names, congestion control) are listed in NOT_SOCKIN with the
reason; test_sockin.py has sockin's versions of the ones whose socket behaviour applies."""

from __future__ import annotations

import importlib

import pytest

from tests.net import test_sockapi, test_udp
from tests.net6 import test_sock6

try:                                   # the kernel's TCP sockets (their tests come with them)
    test_tcp_sockets = importlib.import_module("tests.net.test_tcp_sockets")
except ModuleNotFoundError:
    test_tcp_sockets = None

NOT_SOCKIN = {
    "test_connected_socket_gets_econnrefused_from_port_unreachable":
        "reads the kernel stack's udp.noport counter (test_sockin has the socket part)",
    "test_datagram_too_big_and_message_boundaries":
        "reads the kernel stack's fragment counters (test_sockin has the socket part)",
    "test_broadcast_needs_so_broadcast": "sockin has no interfaces to create",
    "test_raw_icmp_ping_of_ourselves": "sockin has no raw sockets (dissertation 3.9.1)",
    "test_raw_socket_needs_root": "sockin has no raw sockets (test_sockin: EPROTONOSUPPORT)",
    "test_icmp_echo_sockets_need_no_privilege": "sockin has no ICMP",
    # tests/net6/test_sock6.py
    "test_udp6_over_loopback_with_sockaddr_in6_tuples":
        "reads the kernel stack's ip6 counters (test_sockin has UDP and TCP over ::1)",
    "test_address_errors": "errors for unusable IPv6 destinations are the host's (Linux: "
                           "EINVAL for port 0, EADDRNOTAVAIL/ENETUNREACH differ)",
    "test_icmpv6_echo_socket_and_raw_socket": "sockin has no ICMPv6 or raw sockets",
    "test_multicast_membership_on_lo0": "group membership needs the kernel's interfaces",
    "test_names_and_text_forms": "zones name the kernel's interfaces; sockin has none",
    "test_netstat_and_sysctl_show_ipv6": "reads the kernel stack's net.inet6 sysctl nodes",
    # tests/net/test_tcp_sockets.py
    "test_connect_refused_blocking_and_nonblocking":
        "reads the kernel stack's tcp counters (test_sockin: refusal, SO_ERROR once, ENOTCONN)",
    "test_shutdown_write_then_read_and_pollhup":
        "expects the kernel stack's FIN_WAIT_2/TIME_WAIT in TCP_INFO; the host's TCP reports "
        "CLOSED (Linux keeps TIME_WAIT in a separate socket) (test_sockin: half close, POLLHUP)",
    "test_linger_zero_resets_and_peer_sees_pollerr":
        "reads the kernel stack's tcp counters (test_sockin: linger 0 and resets both ways)",
    "test_tcp_options": "congestion control names and defaults are the host's (test_sockin: "
                        "options, TCP_INFO and TCP_CONGESTION reach the host socket)",
    "test_buffer_sizes_autotuning_and_memory": "the kernel stack's buffer autotuning",
    "test_sysctl_tunables_and_counters": "the kernel stack's net.inet.tcp sysctl nodes",
    "test_netstat_shows_connections_states_and_counters": "netstat -s: the kernel stack's "
                                                          "tcp counters",
    "test_reuseaddr_and_time_wait": "netstat lists the kernel stack's TIME_WAIT connection; "
                                    "sockin's are the host's (the bind rules pass over sockin)",
    "test_autotuning_stops_at_the_sysctl_limit": "the kernel stack's net.inet.tcp.rmem_max",
}


def _collect() -> dict[str, object]:
    out: dict[str, object] = {}
    for mod in (test_udp, test_sockapi, test_sock6, test_tcp_sockets):
        if mod is None:
            continue
        for name, fn in vars(mod).items():
            if name.startswith("test_") and callable(fn):
                reason = NOT_SOCKIN.get(name)
                if name in out:
                    name = f"{name}_{mod.__name__.rsplit('.', 1)[1]}"
                out[name] = pytest.mark.skip(reason=f"not sockin: {reason}")(fn) if reason \
                    else fn
    return out


globals().update(_collect())
