"""IPv6 protocol engines, sans-IO (DESIGN rule 7): the neighbour cache (nd), address
autoconfiguration with DAD, SLAAC and router lists (addrconf), fragment reassembly and
fragmentation (frag6), and the ICMPv6 error policy with its rate limit (icmp6_error)."""
