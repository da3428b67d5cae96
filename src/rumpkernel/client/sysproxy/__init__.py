"""sysproxy: remote system calls (rump_sp).  The protocol is described in docs/sysproxy.md.

    wire.py       frames and field encodings (sans-IO)
    messages.py   one record per message type
    marshal.py    syscall arguments, derived from the master table
    protocol.py   the client and server state machines (sans-IO)
    auth.py       HMAC challenge-response
    vmspace.py    the kernel's view of a remote client's memory (copyin/copyout round trips)
    session.py    the kernel side of one connection (process, lwps, requests)
    transport.py  the server's connections and threads: IO thread, read token, watchdog,
                  connection cap, handshake deadline (``rump_server`` is a CLI over it)
The host side -- sockets, the poller, threads -- is ``hypercall/spsock.py``; the client
library is ``client/remote.py``.
"""
