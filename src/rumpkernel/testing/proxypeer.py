"""Linux-side peers for rump_tcpproxy tests: small servers for the host namespace and clients
for the client namespace, run as ``python -m rumpkernel.testing.proxypeer MODE ...``.

Servers (on 127.0.0.1:PORT -- or ADDR:PORT where PORT is written so --, a thread per
connection, until killed; "ready" on stdout once listening):
    serve echo PORT       send back what arrives; close after the peer's FIN
    serve digest PORT     read until the peer's FIN, answer sha256 hex of it, close
    serve greet PORT      send "hello\\n", shut down the sending side (FIN first), read until
                          the peer's FIN and print "got SHA256" on stdout
    serve stall PORT      accept and never read (the peer's data piles up in buffers)
    serve http PORT DIR   Linux's http.server (ThreadingHTTPServer) serving DIR, quiet, with
                          a listen backlog of 512 -- ``python -m http.server`` listens with 5,
                          and the proxy's many connects then wait in SYN retransmissions
Clients (print one result line, exit 0 when it is what the test expects, else 1):
    digest HOST PORT N    send N random bytes, FIN, expect their sha256 back, then EOF
    greet HOST PORT N     expect "hello\\n" then EOF, then send N random bytes and FIN;
                          prints "sent SHA256"
    hold HOST PORT N      open N connections, check each echoes, print "held", keep them
                          until stdin closes, then print "open" per connection still echoing
                          or "reset"/"eof" per connection the other side ended
    flood HOST PORT S     send as fast as the connection takes it for S seconds; print the
                          bytes sent
    refused HOST PORT     expect the connection to end at once without an answer: "reset"
                          (RST) or "eof" (FIN)
"""

from __future__ import annotations

import hashlib
import os
import socket
import sys
import threading


def _read_all(c: socket.socket) -> bytes:
    buf = bytearray()
    while data := c.recv(1 << 16):
        buf += data
    return bytes(buf)


def _handle(mode: str, c: socket.socket) -> None:
    with c:
        try:
            if mode == "echo":
                while data := c.recv(1 << 16):
                    c.sendall(data)
            elif mode == "digest":
                c.sendall(hashlib.sha256(_read_all(c)).hexdigest().encode())
            elif mode == "greet":
                c.sendall(b"hello\n")
                c.shutdown(socket.SHUT_WR)
                print(f"got {hashlib.sha256(_read_all(c)).hexdigest()}", flush=True)
        except OSError:
            pass


def serve_stall(addr: tuple[str, int]) -> None:
    ls = socket.create_server(addr, backlog=16)
    held = []
    print("ready", flush=True)
    while True:
        held.append(ls.accept()[0])


def serve_http(addr: tuple[str, int], directory: str) -> None:
    import functools
    import http.server

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return None

    class Server(http.server.ThreadingHTTPServer):
        request_queue_size = 512
        daemon_threads = True

    srv = Server(addr, functools.partial(Quiet, directory=directory))
    print("ready", flush=True)
    srv.serve_forever()


def serve(mode: str, where: str, *rest: str) -> None:
    host, _, port = where.rpartition(":")
    addr = (host or "127.0.0.1", int(port))
    if mode == "http":
        serve_http(addr, rest[0])
        return
    if mode == "stall":
        serve_stall(addr)
        return
    ls = socket.create_server(addr, backlog=256)
    print("ready", flush=True)
    while True:
        c, _ = ls.accept()
        threading.Thread(target=_handle, args=(mode, c), daemon=True).start()


def client_digest(host: str, port: int, n: int) -> bool:
    data = os.urandom(n)
    with socket.create_connection((host, port), timeout=30) as c:
        c.sendall(data)
        c.shutdown(socket.SHUT_WR)
        reply = _read_all(c)
    ok = reply.decode() == hashlib.sha256(data).hexdigest()
    print("ok" if ok else f"bad reply {reply[:80]!r}")
    return ok


def client_greet(host: str, port: int, n: int) -> bool:
    with socket.create_connection((host, port), timeout=30) as c:
        hello = _read_all(c)
        data = os.urandom(n)
        c.sendall(data)
        c.shutdown(socket.SHUT_WR)
        rest = c.recv(16)
    print(f"sent {hashlib.sha256(data).hexdigest()}")
    return hello == b"hello\n" and rest == b""


def _state(c: socket.socket) -> str:
    try:
        c.sendall(b"ping")
        got = c.recv(16)
    except ConnectionResetError:
        return "reset"
    except OSError as e:
        return f"error {e.errno}"
    return "open" if got == b"ping" else "eof" if not got else f"bad {got!r}"


def client_hold(host: str, port: int, n: int) -> bool:
    conns = [socket.create_connection((host, port), timeout=30) for _ in range(n)]
    states = [_state(c) for c in conns]
    print(*states)
    if states != ["open"] * n:
        return False
    print("held", flush=True)
    sys.stdin.read()
    print(*(_state(c) for c in conns), flush=True)
    return True


def client_flood(host: str, port: int, seconds: int) -> bool:
    import select
    import time

    sent = 0
    chunk = os.urandom(1 << 16)
    with socket.create_connection((host, port), timeout=30) as c:
        c.setblocking(False)
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if select.select([], [c], [], min(left, 0.1))[1]:
                try:
                    sent += c.send(chunk)
                except BlockingIOError:
                    pass
    print(sent)
    return True


def client_refused(host: str, port: int) -> bool:
    """The connection is reset (prints "reset") or closed ("eof") without an answer."""
    try:
        with socket.create_connection((host, port), timeout=30) as c:
            c.sendall(b"ping")
            got = c.recv(16)
    except (ConnectionResetError, BrokenPipeError):
        print("reset")
        return True
    print("eof" if not got else f"answered {got!r}")
    return not got


def main(argv: list[str]) -> int:
    mode, *rest = argv
    if mode == "serve":
        serve(rest[0], rest[1], *rest[2:])
        return 0
    fn = {"digest": client_digest, "greet": client_greet, "hold": client_hold,
          "refused": client_refused,
          "flood": client_flood}[mode]
    ok = fn(rest[0], *map(int, rest[1:]))
    sys.stdout.flush()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
