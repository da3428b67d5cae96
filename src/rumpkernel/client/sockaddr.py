"""Socket addresses for clients that build their own (the hijack's IPv6 sockets): the kernel's
encodings of kern/syscall/structs.py, reachable from the client layer.

Interface:
    pack_in(addr4, port) / pack_in6(addr16, port, flowinfo=0, scope_id=0) -> bytes
    unpack(raw) -> tuple        (family, ...) as structs.unpack_sockaddr: (AF_INET6, addr16,
                                port, flowinfo, scope_id) ...; the family is the kernel's number
    AF_INET6                    the kernel's number for IPv6
"""

from __future__ import annotations

from rumpkernel.kern.abi import AF_INET6
from rumpkernel.kern.syscall import structs as _S

__all__ = ["AF_INET6", "pack_in", "pack_in6", "unpack"]

pack_in = _S.pack_sockaddr_in
pack_in6 = _S.pack_sockaddr_in6
unpack = _S.unpack_sockaddr
