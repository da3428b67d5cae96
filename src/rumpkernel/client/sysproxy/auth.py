"""Challenge-response authentication for sysproxy connections (HMAC-SHA256, mutual).

The server's BANNER carries a fresh 32-byte nonce Ns.  The client answers in its HANDSHAKE with
its own nonce Nc and ``HMAC(secret, "rumpsp1 client" || Ns || Nc)``; the server checks it with
``hmac.compare_digest`` and proves itself in HANDSHAKE_REPLY with
``HMAC(secret, "rumpsp1 server" || Ns || Nc)``.  The secret itself never crosses the wire and a
recorded exchange cannot be replayed against a new nonce.  There is no encryption: the traffic
after the handshake is readable by anyone on the path (use a unix socket or a tunnel).
"""

from __future__ import annotations

import hashlib
import hmac

NONCE_SIZE = 32


def client_mac(secret: bytes, server_nonce: bytes, client_nonce: bytes) -> bytes:
    return hmac.new(secret, b"rumpsp1 client" + server_nonce + client_nonce,
                    hashlib.sha256).digest()


def server_mac(secret: bytes, server_nonce: bytes, client_nonce: bytes) -> bytes:
    return hmac.new(secret, b"rumpsp1 server" + server_nonce + client_nonce,
                    hashlib.sha256).digest()


def verify_client(secret: bytes, server_nonce: bytes, client_nonce: bytes, mac: bytes) -> bool:
    if len(client_nonce) != NONCE_SIZE:
        return False
    return hmac.compare_digest(client_mac(secret, server_nonce, client_nonce), mac)


def verify_server(secret: bytes, server_nonce: bytes, client_nonce: bytes, mac: bytes) -> bool:
    return hmac.compare_digest(server_mac(secret, server_nonce, client_nonce), mac)
