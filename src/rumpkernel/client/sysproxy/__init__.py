"""sysproxy: remote system calls (rump_sp).  The protocol is described in docs/sysproxy.md.

    wire.py       frames and field encodings (sans-IO)
    messages.py   one record per message type
    marshal.py    syscall arguments, derived from the master table
    protocol.py   the client and server state machines (sans-IO)
    auth.py       HMAC challenge-response
    vmspace.py    the kernel's view of a remote client's memory (copyin/copyout round trips)
    session.py    the kernel side of one connection (process, lwps, requests)
The host side -- sockets and threads -- is ``hypercall/spsock.py`` (client) and
``apps/rump_server.py`` (server); the client library is ``client/remote.py``.
"""
