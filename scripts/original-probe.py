#!/usr/bin/env python3
"""Wire probe for a UDPChat-AI server (the original Python one or ours).

    scripts/original-probe.py HOST:PORT [--key-bits N] [--retry-test] [--quiet]

Walks through the protocol (docs/protocol.md, §2-§6) against a running server and
checks each reply:

  1. SESSION_INIT: RSA client key (2048 bits unless --key-bits), checks the
     fingerprint (SHA-256 of server_pubkey), OAEP-SHA-256-unwraps the session
     key and verifies the PSS-SHA-256 signature with a 32-byte salt.
  2. SECURE_MSG HELLO -> HELLO.
  3. MESSAGE before LOGIN -> ERROR "Authentication required.".
  4. LOGIN (new random e-mail) -> WELCOME.
  5. CREATE_ROOM -> ROOM_CREATED, plus a ROOM_LIST broadcast with msg_id (ACKed).
  6. A second session on the SAME UDP socket: SESSION_INIT, LOGIN as another
     user, JOIN_ROOM -> JOINED_ROOM (MEMBER_JOINED broadcasts ACKed).
  7. MESSAGE from session 1 -> MESSAGE broadcast with msg_id and integer
     message_id to both sessions (ACKed); reports broadcast latency, which
     shows the original's 1-second delivery tick.
  8. After the ACKs, no retransmission for 3 s.
  9. Replaying a datagram -> SERVER_ERROR "This nonce was already used".
 10. With --retry-test: a broadcast that is never ACKed is retransmitted;
     counts copies and intervals (original: 5 copies, ~2 s apart).

Needs only the standard library and the `cryptography` package. Exit status 0
when every check passes, 1 otherwise.
"""

import argparse
import base64
import hashlib
import json
import os
import random
import secrets
import socket
import sys
import time

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

failures = []
quiet = False


def log(msg):
    if not quiet:
        print(msg, flush=True)


def check(cond, what, detail=""):
    if cond:
        log(f"PASS {what}")
    else:
        failures.append(what)
        print(f"FAIL {what}" + (f": {detail}" if detail else ""), flush=True)
    return cond


def make_nonce():
    # (time_ns << 32) | random32, 12 bytes big-endian, as the original does.
    return ((time.time_ns() << 32) | random.getrandbits(32)).to_bytes(12, "big")


class Session:
    def __init__(self, sock, addr, key_bits):
        self.sock, self.addr = sock, addr
        self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=key_bits)
        self.session_id = None
        self.key = None
        self.last_raw = None  # last datagram sent (for the replay test)

    def handshake(self, client):
        der = self.private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        request = {"type": "SESSION_INIT", "client_key": base64.b64encode(der).decode()}
        t0 = time.monotonic()
        self.sock.sendto(json.dumps(request, separators=(",", ":")).encode(), self.addr)
        reply, raw = client.expect(lambda m, _: m.get("type") in ("SESSION_INIT", "SERVER_ERROR"), 5.0,
                                   plaintext=True)
        rtt = (time.monotonic() - t0) * 1000
        if not check(reply is not None and reply.get("type") == "SESSION_INIT",
                     f"SESSION_INIT reply ({rtt:.1f} ms)", repr(reply)):
            return False
        missing = [k for k in ("session_id", "encrypted_key", "server_pubkey", "signature", "fingerprint")
                   if k not in reply]
        check(not missing, "SESSION_INIT has all five fields", f"missing {missing}")
        server_der = bytes.fromhex(reply["server_pubkey"])
        check(hashlib.sha256(server_der).hexdigest() == reply["fingerprint"],
              "fingerprint == sha256(server_pubkey DER)")
        key = self.private_key.decrypt(
            bytes.fromhex(reply["encrypted_key"]),
            padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
        check(len(key) == 32, "session key is 32 bytes (AES-256)")
        server_pub = serialization.load_der_public_key(server_der)
        try:
            server_pub.verify(bytes.fromhex(reply["signature"]), key,
                              padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                              hashes.SHA256())
            check(True, f"PSS-SHA256 signature (salt 32) verifies; server key {server_pub.key_size} bits")
        except Exception as e:  # noqa: BLE001
            check(False, "PSS signature verifies", str(e))
        check(b'": "' in raw, "server JSON uses Python default separators (space after colon)")
        self.session_id, self.key = reply["session_id"], key
        client.sessions[self.session_id] = self
        log(f"     session_id={self.session_id} fingerprint={reply['fingerprint']}")
        return True

    def send(self, inner):
        nonce = make_nonce()
        plaintext = json.dumps(inner, separators=(",", ":")).encode()
        envelope = {"type": "SECURE_MSG", "session_id": self.session_id, "nonce": nonce.hex(),
                    "ciphertext": AESGCM(self.key).encrypt(nonce, plaintext, None).hex()}
        raw = json.dumps(envelope, separators=(",", ":")).encode()
        self.last_raw = raw
        self.sock.sendto(raw, self.addr)

    def decrypt(self, envelope):
        return json.loads(AESGCM(self.key).decrypt(bytes.fromhex(envelope["nonce"]),
                                                   bytes.fromhex(envelope["ciphertext"]), None))


class Client:
    """One UDP socket shared by all sessions; buffers packets nobody asked for yet."""

    def __init__(self, addr):
        self.addr = addr
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("0.0.0.0", 0))
        self.sessions = {}
        self.pending = []  # (arrival time, session or None, inner/plain dict, raw)
        self.auto_ack = True
        self.seen_msg_ids = {}  # (session_id, msg_id) -> list of arrival times

    def _receive(self, timeout):
        self.sock.settimeout(max(timeout, 0.001))
        try:
            raw, _ = self.sock.recvfrom(65535)
        except socket.timeout:
            return
        now = time.monotonic()
        outer = json.loads(raw)
        if outer.get("type") == "SECURE_MSG":
            session = self.sessions.get(outer.get("session_id"))
            if session is None:
                self.pending.append((now, None, outer, raw))
                return
            inner = session.decrypt(outer)
            if "msg_id" in inner:
                self.seen_msg_ids.setdefault((session.session_id, inner["msg_id"]), []).append(now)
                if self.auto_ack:
                    session.send({"type": "ACK", "data": {"msg_id": inner["msg_id"]}})
            self.pending.append((now, session, inner, raw))
        else:
            self.pending.append((now, None, outer, raw))

    def expect(self, pred, timeout, session=None, plaintext=False):
        """First buffered/arriving packet matching pred(packet, session); (packet, raw) or (None, None)."""
        deadline = time.monotonic() + timeout
        while True:
            for i, (_, s, pkt, raw) in enumerate(self.pending):
                if plaintext and s is not None:
                    continue
                if session is not None and s is not session:
                    continue
                if pred(pkt, s):
                    del self.pending[i]
                    return pkt, raw
            left = deadline - time.monotonic()
            if left <= 0:
                return None, None
            self._receive(left)

    def expect_arrival(self, pred, timeout, session=None):
        """Like expect, also returning the arrival time."""
        deadline = time.monotonic() + timeout
        while True:
            for i, (t, s, pkt, _) in enumerate(self.pending):
                if (session is None or s is session) and s is not None and pred(pkt, s):
                    del self.pending[i]
                    return pkt, t
            left = deadline - time.monotonic()
            if left <= 0:
                return None, None
            self._receive(left)

    def drain(self, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self._receive(end - time.monotonic())


def of_type(*types):
    return lambda m, _s: m.get("type") in types


def main():
    global quiet
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("target", help="HOST:PORT of the server")
    ap.add_argument("--key-bits", type=int, default=2048, help="client RSA key size (default 2048)")
    ap.add_argument("--retry-test", action="store_true", help="also measure retransmission of an un-ACKed broadcast (~12 s)")
    ap.add_argument("--quiet", action="store_true", help="print failures and the summary only")
    args = ap.parse_args()
    quiet = args.quiet
    host, _, port = args.target.rpartition(":")
    addr = (socket.gethostbyname(host or "127.0.0.1"), int(port))

    client = Client(addr)
    tag = secrets.token_hex(4)

    # 1. handshake
    alice = Session(client.sock, addr, args.key_bits)
    if not alice.handshake(client):
        return finish()

    # 2. HELLO
    alice.send({"type": "HELLO"})
    reply, _ = client.expect(of_type("HELLO", "ERROR"), 3.0, alice)
    check(reply is not None and reply.get("type") == "HELLO", "HELLO -> HELLO", repr(reply))

    # 3. MESSAGE before LOGIN
    alice.send({"type": "MESSAGE", "data": {"room_id": "0" * 32, "content": "hi"}})
    reply, _ = client.expect(of_type("ERROR"), 3.0, alice)
    check(reply is not None and reply["data"]["message"] == "Authentication required.",
          "MESSAGE before LOGIN -> ERROR 'Authentication required.'", repr(reply))

    # 4. LOGIN
    alice_email = f"probe-a-{tag}@example.com"
    alice.send({"type": "LOGIN", "data": {"email": alice_email}})
    reply, _ = client.expect(of_type("WELCOME", "ERROR", "PLEASE_LOGIN", "UNAUTHORISED"), 3.0, alice)
    check(reply is not None and reply.get("type") == "WELCOME", "LOGIN -> WELCOME", repr(reply))
    if reply is None or reply.get("type") != "WELCOME":
        return finish()
    alice_uid = reply["data"]["user"]["user_id"]

    # 5. CREATE_ROOM
    room_name = f"probe-{tag}"
    alice.send({"type": "CREATE_ROOM", "data": {"name": room_name}})
    reply, _ = client.expect(of_type("ROOM_CREATED", "ERROR"), 3.0, alice)
    check(reply is not None and reply.get("type") == "ROOM_CREATED", "CREATE_ROOM -> ROOM_CREATED", repr(reply))
    if reply is None or reply.get("type") != "ROOM_CREATED":
        return finish()
    room_id = reply["data"]["room_id"]
    reply, _ = client.expect(of_type("ROOM_LIST"), 3.0, alice)
    check(reply is not None and "msg_id" in reply and any(r["room_id"] == room_id for r in reply["data"]),
          "ROOM_LIST broadcast with msg_id lists the new room (ACKed)", repr(reply)[:200])

    # 6. second session on the same socket
    bob = Session(client.sock, addr, args.key_bits)
    if not bob.handshake(client):
        return finish()
    bob.send({"type": "LOGIN", "data": {"email": f"probe-b-{tag}@example.com"}})
    reply, _ = client.expect(of_type("WELCOME", "ERROR"), 3.0, bob)
    check(reply is not None and reply.get("type") == "WELCOME", "second session on same socket: LOGIN -> WELCOME",
          repr(reply))
    bob.send({"type": "JOIN_ROOM", "data": {"room_id": room_id}})
    reply, _ = client.expect(of_type("JOINED_ROOM", "ERROR"), 3.0, bob)
    check(reply is not None and reply.get("type") == "JOINED_ROOM", "JOIN_ROOM -> JOINED_ROOM", repr(reply))
    # MEMBER_JOINED goes to every session of every member (both of ours).
    for s, name in ((alice, "alice"), (bob, "bob")):
        reply, _ = client.expect(of_type("MEMBER_JOINED"), 3.0, s)
        check(reply is not None and "msg_id" in reply, f"MEMBER_JOINED broadcast to {name} (ACKed)", repr(reply))
    client.drain(0.3)
    client.pending = [p for p in client.pending if p[2].get("type") != "ROOM_LIST"]

    # 7. MESSAGE and its broadcast
    content = f"hello from the probe {tag} ✓"
    t_send = time.monotonic()
    alice.send({"type": "MESSAGE", "data": {"room_id": room_id, "content": content}})
    got = {}
    for s, name in ((alice, "alice"), (bob, "bob")):
        reply, t = client.expect_arrival(lambda m, _s: m.get("type") in ("MESSAGE", "ERROR"), 4.0, s)
        ok = (reply is not None and reply.get("type") == "MESSAGE" and isinstance(reply.get("msg_id"), str)
              and isinstance(reply["data"].get("message_id"), int) and reply["data"]["content"] == content
              and reply["data"]["user_id"] == alice_uid and reply["data"]["room_id"] == room_id)
        check(ok, f"MESSAGE broadcast to {name}: msg_id + integer message_id, "
                  f"{(t - t_send) * 1000 if t else -1:.0f} ms after send (ACKed)", repr(reply))
        got[name] = reply
    if got.get("alice") and got.get("bob"):
        log(f"     msg_id alice={got['alice']['msg_id']} bob={got['bob']['msg_id']} "
            f"({'same' if got['alice']['msg_id'] == got['bob']['msg_id'] else 'different'})")

    # 8. no retransmission after ACK
    client.drain(3.0)
    dup = [p for p in client.pending if p[2].get("type") == "MESSAGE"]
    check(not dup, "no MESSAGE retransmission within 3 s after ACK", f"{len(dup)} copies")
    client.pending.clear()

    # 9. replay
    client.sock.sendto(alice.last_raw, addr)
    reply, _ = client.expect(of_type("SERVER_ERROR"), 3.0, plaintext=True)
    check(reply is not None and reply.get("message") == "This nonce was already used",
          "replayed datagram -> SERVER_ERROR 'This nonce was already used'", repr(reply))

    # 10. retransmission of an un-ACKed broadcast
    if args.retry_test:
        client.auto_ack = False
        client.seen_msg_ids.clear()
        t_send = time.monotonic()
        bob.send({"type": "MESSAGE", "data": {"room_id": room_id, "content": "not acked"}})
        client.drain(13.0)
        for s, name in ((alice, "alice"), (bob, "bob")):
            times = sorted(t for (sid, _), ts in client.seen_msg_ids.items() if sid == s.session_id for t in ts)
            rel = [f"{(t - t_send):.2f}" for t in times]
            log(f"     un-ACKed broadcast copies to {name}: {len(times)} at +{', +'.join(rel)} s")
            check(len(times) >= 2, f"un-ACKed broadcast to {name} is retransmitted")
        client.auto_ack = True

    return finish()


def finish():
    if failures:
        print(f"probe: {len(failures)} check(s) FAILED: {', '.join(failures)}", flush=True)
        return 1
    print("probe: all checks passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
