#!/usr/bin/env python3
"""Readiness probe for the local Kafka: sends a real Metadata (v0) request, no client library needed.

Exits 0 when the broker answers with at least one broker in its metadata, 1 otherwise.
Usage: ping.py HOST PORT
"""
import socket
import struct
import sys


# ANCHOR: metadata_request
def main() -> int:
    host, port = sys.argv[1], int(sys.argv[2])
    client_id = b"cruncan-stack"
    # api_key=3 (Metadata), api_version=0, correlation_id=7, client_id, topics=[] (all)
    body = struct.pack(">hhih", 3, 0, 7, len(client_id)) + client_id + struct.pack(">i", 0)
    try:
        with socket.create_connection((host, port), timeout=3) as s:
            s.settimeout(3)
            s.sendall(struct.pack(">i", len(body)) + body)
            size = struct.unpack(">i", recv_exact(s, 4))[0]
            resp = recv_exact(s, size)
    except (OSError, ValueError):
        return 1
    correlation_id, broker_count = struct.unpack(">ii", resp[:8])
    return 0 if correlation_id == 7 and broker_count >= 1 else 1
# ANCHOR_END: metadata_request


def recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ValueError("connection closed")
        buf += chunk
    return buf


if __name__ == "__main__":
    sys.exit(main())
