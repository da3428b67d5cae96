"""The local domain (AF_LOCAL sockets)."""
