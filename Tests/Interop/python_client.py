#!/usr/bin/env python3
"""A UDPChat-AI client written against docs/protocol.md with Python's
`cryptography` package, the way the existing Python clients do it.

It checks the handshake (five fields, lowercase hex, fingerprint, PSS with a
32-byte salt, OAEP-SHA-256) and makes secure round trips (HELLO, LOGIN,
LIST_ROOMS). Prints one JSON object with what it saw; exits 1 with a reason
on the first failed check.

usage: python_client.py HOST PORT [--key-bits 1024|2048] [--email ADDR]
"""
import argparse
import base64
import hashlib
import json
import os
import re
import socket
import sys
import time

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

HEX = re.compile(r"^[0-9a-f]+$")


def fail(reason):
    print(json.dumps({"ok": False, "reason": reason}))
    sys.exit(1)


def exchange(sock, address, payload, timeout=5.0):
    sock.sendto(json.dumps(payload).encode(), address)
    sock.settimeout(timeout)
    data, _ = sock.recvfrom(65535)
    return json.loads(data.decode())


def client_nonce():
    # docs/protocol.md §3.3: (nanosecond timestamp << 32) | 32 random bits, big-endian.
    value = (time.time_ns() << 32) | int.from_bytes(os.urandom(4), "big")
    return value.to_bytes(12, "big")


def secure(sock, address, session_id, key, inner):
    nonce = client_nonce()
    ciphertext = AESGCM(key).encrypt(nonce, json.dumps(inner).encode(), None)
    reply = exchange(sock, address, {
        "type": "SECURE_MSG", "session_id": session_id,
        "nonce": nonce.hex(), "ciphertext": ciphertext.hex(),
    })
    if reply.get("type") != "SECURE_MSG":
        fail(f"expected SECURE_MSG, got {reply}")
    for field in ("nonce", "ciphertext"):
        if not HEX.match(reply[field]):
            fail(f"{field} is not lowercase hex")
    if reply["session_id"] != session_id:
        fail("reply carries another session id")
    plaintext = AESGCM(key).decrypt(bytes.fromhex(reply["nonce"]), bytes.fromhex(reply["ciphertext"]), None)
    return json.loads(plaintext.decode())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--key-bits", type=int, default=2048)
    parser.add_argument("--email", default="python@example.com")
    args = parser.parse_args()
    address = (args.host, args.port)
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)

    private_key = rsa.generate_private_key(public_exponent=65537, key_size=args.key_bits)
    spki = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    reply = exchange(sock, address, {"type": "SESSION_INIT", "client_key": base64.b64encode(spki).decode()})

    if reply.get("type") != "SESSION_INIT":
        fail(f"expected SESSION_INIT, got {reply}")
    for field in ("session_id", "encrypted_key", "server_pubkey", "signature", "fingerprint"):
        if not isinstance(reply.get(field), str) or not HEX.match(reply[field]):
            fail(f"{field} missing or not lowercase hex")
    if len(reply["session_id"]) != 32:
        fail("session_id is not 32 hex characters")
    server_der = bytes.fromhex(reply["server_pubkey"])
    if hashlib.sha256(server_der).hexdigest() != reply["fingerprint"]:
        fail("fingerprint is not the SHA-256 of server_pubkey")
    server_key = serialization.load_der_public_key(server_der)
    encrypted_key = bytes.fromhex(reply["encrypted_key"])
    if len(encrypted_key) != args.key_bits // 8:
        fail("encrypted_key is not as long as the client modulus")
    key = private_key.decrypt(encrypted_key, padding.OAEP(
        mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
    if len(key) != 32:
        fail("session key is not 32 bytes")
    # Exactly the web client's check: PSS, SHA-256, MGF1-SHA-256, salt 32.
    server_key.verify(bytes.fromhex(reply["signature"]), key, padding.PSS(
        mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())
    # And hello.py's: the library's maximum salt length also accepts it.
    server_key.verify(bytes.fromhex(reply["signature"]), key, padding.PSS(
        mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.MAX_LENGTH), hashes.SHA256())

    session_id = reply["session_id"]
    hello = secure(sock, address, session_id, key, {"type": "HELLO", "data": {"username": "python"}})
    if hello != {"type": "HELLO", "message": "Welcome to UDPChat-AI."}:
        fail(f"unexpected HELLO reply {hello}")
    welcome = secure(sock, address, session_id, key, {"type": "LOGIN", "data": {"email": args.email}})
    if welcome.get("type") != "WELCOME" or welcome["data"]["user"]["email"] != args.email.lower():
        fail(f"unexpected LOGIN reply {welcome}")
    rooms = secure(sock, address, session_id, key, {"type": "LIST_ROOMS"})
    if rooms.get("type") != "ROOM_LIST" or not isinstance(rooms.get("data"), list):
        fail(f"unexpected LIST_ROOMS reply {rooms}")

    print(json.dumps({
        "ok": True, "session_id": session_id, "fingerprint": reply["fingerprint"],
        "hello": hello["message"], "user": welcome["data"]["user"], "rooms": len(rooms["data"]),
    }))


if __name__ == "__main__":
    main()
