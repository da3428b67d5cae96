"""The kernel's ABI constants, declared once (DESIGN rule 6): the rumpdefs of this kernel.

Every number a system call takes or returns that is not a plain count lives here: open flags,
``AT_*``, poll bits, file types and permission bits, ``makedev``, seek and fcntl commands, clocks,
xattr and reboot flags, and the net faction's socket, interface, route and ioctl constants.
Values are NetBSD's where NetBSD has the name (so a missing translation shows up as a wrong
number, not a silent match); errno values are the ``Errno`` enum in ``kern/errno.py``.

Each family is a ``Group``: a name prefix, whether its members are bit flags or an enumeration,
and which host module knows the host's values of the same names.  Translation to and from the
host's numbers is derived from the groups by name, in the client layer (``client/abi.py``), the
only place where host and kernel numbers meet; nothing else ever writes a literal.

Interface:
    O_* AT_* POLL* S_IF* SEEK_* F_* FD_CLOEXEC CLOCK_* UTIME_* XATTR_* RB_* ...   the values
    AF_* SOCK_* SOL_SOCKET SO_* IPPROTO_* IP_* TCP_* MSG_* SHUT_* SCM_*   sockets
    IFF_* RTF_* ATF_* SIOC* FIONBIO FIONREAD      interface/route/ARP configuration (ioctl)
    GROUPS                         name -> Group (prefix, members, bits, host module)
    makedev(major, minor) / major(dev) / minor(dev)      the kernel's dev_t (64-bit encoding:
                                   12+20 low bits as Linux's old/new encodings, the rest above)
"""

from __future__ import annotations

from dataclasses import dataclass

# ---- open(2) --------------------------------------------------------------------------------
O_RDONLY, O_WRONLY, O_RDWR, O_ACCMODE = 0, 1, 2, 3
O_NONBLOCK = 0x4
O_APPEND = 0x8
O_SYNC = 0x80
O_NOFOLLOW = 0x100
O_CREAT = 0x200
O_TRUNC = 0x400
O_EXCL = 0x800
O_NOCTTY = 0x8000
O_DSYNC = 0x10000
O_DIRECTORY = 0x200000
O_CLOEXEC = 0x400000
O_NOATIME = 0x2000000   # private to this kernel (NetBSD has none)
O_PATH = 0x4000000      # private: a handle on a file (a vnode reference) without I/O rights

# ---- *at(2) --------------------------------------------------------------------------------
AT_FDCWD = -100
AT_EACCESS = 0x100
AT_SYMLINK_NOFOLLOW = 0x200
AT_SYMLINK_FOLLOW = 0x400
AT_REMOVEDIR = 0x800
AT_EMPTY_PATH = 0x1000   # Linux's value: an empty path means the file dirfd refers to

# ---- renameat2(2) flags (Linux's values; NetBSD has no renameat2) -----------------------------
RENAME_NOREPLACE = 0x1
RENAME_EXCHANGE = 0x2
RENAME_WHITEOUT = 0x4

# ---- poll(2) --------------------------------------------------------------------------------
POLLIN = 0x1
POLLPRI = 0x2
POLLOUT = 0x4
POLLERR = 0x8
POLLHUP = 0x10
POLLNVAL = 0x20
POLLRDNORM = 0x40
POLLRDBAND = 0x80
POLLWRNORM = POLLOUT     # NetBSD: the same bit as POLLOUT (Linux: 0x100)
POLLWRBAND = 0x100

# ---- file types and permission bits (the same on every Unix) ---------------------------------
S_IFMT = 0o170000
S_IFIFO = 0o010000
S_IFCHR = 0o020000
S_IFDIR = 0o040000
S_IFBLK = 0o060000
S_IFREG = 0o100000
S_IFLNK = 0o120000
S_IFSOCK = 0o140000
S_ISUID = 0o4000
S_ISGID = 0o2000
S_ISVTX = 0o1000
ALLPERMS = 0o7777

# ---- lseek(2), fcntl(2) -----------------------------------------------------------------------
SEEK_SET, SEEK_CUR, SEEK_END, SEEK_DATA, SEEK_HOLE = 0, 1, 2, 3, 4
F_DUPFD, F_GETFD, F_SETFD, F_GETFL, F_SETFL = 0, 1, 2, 3, 4
F_DUPFD_CLOEXEC = 12
FD_CLOEXEC = 1

# ---- clocks, times ------------------------------------------------------------------------------
CLOCK_REALTIME = 0
CLOCK_MONOTONIC = 3
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2

# ---- xattrs, access, reboot ------------------------------------------------------------------
XATTR_CREATE, XATTR_REPLACE = 1, 2
XATTR_NOFOLLOW = 0x100   # flag of the *xattr system calls (the l* variants)
F_OK, X_OK, W_OK, R_OK = 0, 1, 2, 4
RB_AUTOBOOT, RB_NOSYNC, RB_HALT, RB_POWERDOWN = 0, 0x4, 0x8, 0x808

# ---- resource limits (getrlimit/setrlimit) ------------------------------------------------------
RLIMIT_NOFILE = 8
RLIM_INFINITY = (1 << 63) - 1

# ---- limits -------------------------------------------------------------------------------------
PATH_MAX = 4096          # bytes in a path, with its NUL (Linux's value)
NAME_MAX = 255           # bytes in one name
SYMLINK_MAX = PATH_MAX - 1


# ---- sockets (the net faction): NetBSD's values ---------------------------------------------
AF_UNSPEC, AF_LOCAL, AF_UNIX, AF_INET, AF_LINK, AF_INET6 = 0, 1, 1, 2, 18, 24
SOCK_STREAM, SOCK_DGRAM, SOCK_RAW, SOCK_RDM, SOCK_SEQPACKET = 1, 2, 3, 4, 5
SOCK_CLOEXEC, SOCK_NONBLOCK, SOCK_NOSIGPIPE = 0x10000000, 0x20000000, 0x40000000
SOCK_FLAGS_MASK = SOCK_CLOEXEC | SOCK_NONBLOCK | SOCK_NOSIGPIPE
SOL_SOCKET = 0xFFFF
SOMAXCONN = 128
SO_DEBUG, SO_ACCEPTCONN, SO_REUSEADDR, SO_KEEPALIVE = 0x1, 0x2, 0x4, 0x8
SO_DONTROUTE, SO_BROADCAST, SO_USELOOPBACK, SO_LINGER = 0x10, 0x20, 0x40, 0x80
SO_OOBINLINE, SO_REUSEPORT, SO_NOSIGPIPE, SO_TIMESTAMP = 0x100, 0x200, 0x800, 0x2000
SO_SNDBUF, SO_RCVBUF, SO_SNDLOWAT, SO_RCVLOWAT = 0x1001, 0x1002, 0x1003, 0x1004
SO_ERROR, SO_TYPE, SO_SNDTIMEO, SO_RCVTIMEO = 0x1007, 0x1008, 0x100B, 0x100C
SO_DOMAIN, SO_PROTOCOL = 0x1011, 0x1012    # beyond NetBSD (Linux has them): read-only
SO_BINDTODEVICE = 0x1013     # beyond NetBSD (Linux's): an interface name; "" unbinds
IPPROTO_IP, IPPROTO_ICMP, IPPROTO_IGMP, IPPROTO_TCP, IPPROTO_UDP = 0, 1, 2, 6, 17
IPPROTO_IPV6, IPPROTO_ICMPV6, IPPROTO_RAW = 41, 58, 255
IP_OPTIONS, IP_HDRINCL, IP_TOS, IP_TTL, IP_RECVDSTADDR = 1, 2, 3, 4, 7
IP_MULTICAST_IF, IP_MULTICAST_TTL, IP_MULTICAST_LOOP = 9, 10, 11
IP_ADD_MEMBERSHIP, IP_DROP_MEMBERSHIP = 12, 13
IP_RECVTTL, IP_MINTTL, IP_PKTINFO, IP_RECVPKTINFO = 0x17, 0x18, 0x19, 0x1A
# IPv6 socket options (level IPPROTO_IPV6), NetBSD's values (RFC 3493, RFC 3542)
IPV6_UNICAST_HOPS, IPV6_MULTICAST_IF, IPV6_MULTICAST_HOPS, IPV6_MULTICAST_LOOP = 4, 9, 10, 11
IPV6_JOIN_GROUP, IPV6_LEAVE_GROUP, IPV6_CHECKSUM, IPV6_V6ONLY = 12, 13, 26, 27
IPV6_RECVPKTINFO, IPV6_RECVHOPLIMIT, IPV6_PKTINFO, IPV6_HOPLIMIT = 36, 37, 46, 47
IPV6_RECVTCLASS, IPV6_TCLASS, IPV6_DONTFRAG = 57, 61, 62
TCP_NODELAY, TCP_MAXSEG, TCP_KEEPIDLE, TCP_KEEPINTVL = 1, 2, 3, 5
TCP_KEEPCNT, TCP_KEEPINIT, TCP_INFO, TCP_MD5SIG = 6, 7, 9, 0x10
TCP_CONGESTION = 0x20   # NetBSD's TCP_CONGCTL, named as Linux (and Python) name it
TCP_QUICKACK, TCP_USER_TIMEOUT, TCP_DEFER_ACCEPT = 0x40, 0x41, 0x42   # beyond NetBSD
MSG_OOB, MSG_PEEK, MSG_DONTROUTE, MSG_EOR = 0x1, 0x2, 0x4, 0x8
MSG_TRUNC, MSG_CTRUNC, MSG_WAITALL, MSG_DONTWAIT = 0x10, 0x20, 0x40, 0x80
MSG_BCAST, MSG_MCAST, MSG_NOSIGNAL, MSG_CMSG_CLOEXEC = 0x100, 0x200, 0x400, 0x800
SHUT_RD, SHUT_WR, SHUT_RDWR = 0, 1, 2
SCM_RIGHTS, SCM_CREDS, SCM_TIMESTAMP = 0x1, 0x4, 0x8

# ---- interfaces, routes, ARP (configuration ioctls on a socket) ----------------------------
IFNAMSIZ = 16
IFF_UP, IFF_BROADCAST, IFF_DEBUG, IFF_LOOPBACK = 0x1, 0x2, 0x4, 0x8
IFF_POINTOPOINT, IFF_RUNNING, IFF_NOARP, IFF_PROMISC = 0x10, 0x40, 0x80, 0x100
IFF_ALLMULTI, IFF_SIMPLEX, IFF_MULTICAST = 0x200, 0x800, 0x8000
RTF_UP, RTF_GATEWAY, RTF_HOST, RTF_REJECT = 0x1, 0x2, 0x4, 0x8
RTF_DYNAMIC, RTF_MODIFIED, RTF_STATIC, RTF_BLACKHOLE = 0x10, 0x20, 0x800, 0x1000
RTF_CONNECTED, RTF_LOCAL = 0x100, 0x40000   # an interface's own subnet / own address
ATF_PERM, ATF_PUBL = 0x4, 0x8    # arpreq flags: permanent entry, published


def _ioc(inout: int, group: str, num: int, size: int) -> int:
    return inout | ((size & 0x1FFF) << 16) | (ord(group) << 8) | num


_IN, _OUT = 0x80000000, 0x40000000
# struct sizes: ifreq 32, ifaliasreq 64, iflinkstr 16+1024, rtreq 72, arpreq 48 (structs.py)
SIOCSIFFLAGS = _ioc(_IN, "i", 16, 32)
SIOCGIFFLAGS = _ioc(_IN | _OUT, "i", 17, 32)
SIOCDIFADDR = _ioc(_IN, "i", 25, 32)
SIOCAIFADDR = _ioc(_IN, "i", 26, 64)
SIOCSARP = _ioc(_IN, "i", 30, 48)
SIOCDARP = _ioc(_IN, "i", 32, 48)
SIOCIFDESTROY = _ioc(_IN, "i", 121, 32)
SIOCIFCREATE = _ioc(_IN, "i", 122, 32)
SIOCGIFMTU = _ioc(_IN | _OUT, "i", 126, 32)
SIOCSIFMTU = _ioc(_IN, "i", 127, 32)
SIOCSLINKSTR = _ioc(_IN, "i", 136, 16)     # + the string (variable length)
SIOCGIFINDEX = _ioc(_IN | _OUT, "i", 140, 32)
SIOCSIFPCAP = _ioc(_IN, "i", 141, 16)      # + a host path (empty: stop); beyond NetBSD
# IPv6 (structs IN6_ALIASREQ 112, IN6_IFREQ 44, RTREQ6 84); NetBSD's numbers where it has them
SIOCAIFADDR_IN6 = _ioc(_IN, "i", 107, 112)
SIOCDIFADDR_IN6 = _ioc(_IN, "i", 25, 44)
SIOCADDRT6 = _ioc(_IN, "r", 13, 84)
SIOCDELRT6 = _ioc(_IN, "r", 14, 84)
SIOCGETRT6 = _ioc(_IN | _OUT, "r", 15, 84)
SIOCADDRT = _ioc(_IN, "r", 10, 72)
SIOCDELRT = _ioc(_IN, "r", 11, 72)
SIOCGETRT = _ioc(_IN | _OUT, "r", 12, 72)
FIONBIO = _ioc(_IN, "f", 126, 4)
FIONREAD = _ioc(_OUT, "f", 127, 4)


# ---- device numbers ---------------------------------------------------------------------------
def makedev(major: int, minor: int) -> int:
    """The kernel's dev_t (glibc's 64-bit layout, 32-bit major and minor): 8 low minor bits,
    12 major bits, 12 more minor bits (Linux's "new" 32-bit encoding), then the high 12 minor
    and 20 major bits above."""
    return ((minor & 0xFF) | ((major & 0xFFF) << 8) | ((minor & 0xFFFFFF00) << 12)
            | ((major & 0xFFFFF000) << 32))


def major(dev: int) -> int:
    return ((dev >> 8) & 0xFFF) | ((dev >> 32) & 0xFFFFF000)


def minor(dev: int) -> int:
    return (dev & 0xFF) | ((dev >> 12) & 0xFFFFFF00)


# ---- the groups translations are derived from ------------------------------------------------
@dataclass(frozen=True)
class Group:
    """A family of constants: ``members`` maps names (as the host spells them) to kernel
    values; ``bits`` says whether values combine as flags; ``host`` names the Python module
    where the host's values of the same names live ("os", "select", "socket", "errno" ...)."""

    name: str
    members: dict[str, int]
    bits: bool
    host: str


def _collect(prefix: str, *, exclude: tuple[str, ...] = ()) -> dict[str, int]:
    return {n: v for n, v in globals().items()
            if n.startswith(prefix) and n not in exclude and type(v) is int}


GROUPS: dict[str, Group] = {
    "open": Group("open", _collect("O_", exclude=("O_ACCMODE", "O_RDONLY", "O_WRONLY",
                                                   "O_RDWR")), True, "os"),
    "poll": Group("poll", _collect("POLL"), True, "select"),
    "seek": Group("seek", _collect("SEEK_"), False, "os"),
    "fcntl": Group("fcntl", {n: v for n, v in _collect("F_").items()
                             if n not in ("F_OK",)}, False, "fcntl"),
    "clock": Group("clock", _collect("CLOCK_"), False, "time"),
    "rlimit": Group("rlimit", {"RLIMIT_NOFILE": RLIMIT_NOFILE}, False, "resource"),
    "access": Group("access", {"F_OK": F_OK, "X_OK": X_OK, "W_OK": W_OK, "R_OK": R_OK},
                    True, "os"),
    "af": Group("af", _collect("AF_"), False, "socket"),
    "socktype": Group("socktype", {n: v for n, v in _collect("SOCK_").items()
                                   if n not in ("SOCK_CLOEXEC", "SOCK_NONBLOCK",
                                                "SOCK_NOSIGPIPE", "SOCK_FLAGS_MASK")},
                      False, "socket"),
    "sockflags": Group("sockflags", {"SOCK_CLOEXEC": SOCK_CLOEXEC,
                                     "SOCK_NONBLOCK": SOCK_NONBLOCK}, True, "socket"),
    # socket option levels (not IPPROTO_ICMP: Linux's SOL_SOCKET is 1)
    "level": Group("level", {"SOL_SOCKET": SOL_SOCKET, "IPPROTO_IP": IPPROTO_IP,
                             "IPPROTO_TCP": IPPROTO_TCP, "IPPROTO_UDP": IPPROTO_UDP,
                             "IPPROTO_IPV6": IPPROTO_IPV6, "IPPROTO_ICMPV6": IPPROTO_ICMPV6,
                             "IPPROTO_RAW": IPPROTO_RAW},
                   False, "socket"),
    "ipproto": Group("ipproto", _collect("IPPROTO_"), False, "socket"),
    "so": Group("so", _collect("SO_"), False, "socket"),
    "ip": Group("ip", _collect("IP_"), False, "socket"),
    "ipv6": Group("ipv6", _collect("IPV6_"), False, "socket"),
    "tcp": Group("tcp", _collect("TCP_"), False, "socket"),
    "msg": Group("msg", _collect("MSG_"), True, "socket"),
    "shut": Group("shut", _collect("SHUT_"), False, "socket"),
    "scm": Group("scm", _collect("SCM_"), False, "socket"),
}

