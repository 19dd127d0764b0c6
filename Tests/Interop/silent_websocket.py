#!/usr/bin/env python3
"""A WebSocket client that upgrades, sends no frame, and reports what the
server does: the close frame it sends and when it drops the connection.

  silent_websocket.py HOST PORT [--answer]

--answer: reply to the server's close frame, as a well-behaved client does;
without it the client never answers (nor pings). Prints one JSON line:
{"status": 101, "close": [CODE, REASON], "close_at": S, "eof_at": S}.
"""
import json
import os
import socket
import struct
import sys
import time

host, port = sys.argv[1], int(sys.argv[2])
answer = "--answer" in sys.argv

connection = socket.create_connection((host, port), timeout=60)
request = (
    f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
)
connection.sendall(request.encode())
start = time.monotonic()
result = {}
buffer = b""
while b"\r\n\r\n" not in buffer:
    chunk = connection.recv(4096)
    if not chunk:
        break
    buffer += chunk
head, _, buffer = buffer.partition(b"\r\n\r\n")
result["status"] = int(head.split()[1]) if head else None

while True:
    while len(buffer) >= 2:
        length, offset = buffer[1] & 0x7F, 2
        if length == 126:
            if len(buffer) < 4:
                break
            length, offset = struct.unpack(">H", buffer[2:4])[0], 4
        elif length == 127:
            if len(buffer) < 10:
                break
            length, offset = struct.unpack(">Q", buffer[2:10])[0], 10
        if len(buffer) < offset + length:
            break
        opcode, payload = buffer[0] & 0x0F, buffer[offset:offset + length]
        buffer = buffer[offset + length:]
        if opcode == 8 and "close" not in result:
            code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else None
            result["close"] = [code, payload[2:].decode("utf-8", "replace")]
            result["close_at"] = round(time.monotonic() - start, 2)
            if answer:
                mask = os.urandom(4)
                body = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload[:2]))
                connection.sendall(bytes([0x88, 0x80 | len(body)]) + mask + body)
    try:
        chunk = connection.recv(4096)
    except socket.timeout:
        break
    if not chunk:
        break
    buffer += chunk
result["eof_at"] = round(time.monotonic() - start, 2)
print(json.dumps(result))
