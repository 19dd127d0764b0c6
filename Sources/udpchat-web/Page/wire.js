// The protocol's cryptography, all of it in WebCrypto (docs/web.md):
// the handshake (an RSA-OAEP key pair of the page's own; the server's
// RSA-PSS signature, salt 32, over the session key) and the AES-256-GCM
// envelope of every later packet. No key leaves this module except the
// session key, which the page keeps to resume its session after a reload.

const subtle = globalThis.crypto.subtle;

export class HandshakeError extends Error {}

export function toHex(bytes) {
  let text = "";
  for (const byte of bytes) text += byte.toString(16).padStart(2, "0");
  return text;
}

export function fromHex(text) {
  if (typeof text !== "string" || !/^(?:[0-9a-fA-F]{2})*$/.test(text)) throw new HandshakeError("a field that should be hex is not");
  const bytes = new Uint8Array(text.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(text.substr(i * 2, 2), 16);
  return bytes;
}

function toBase64(bytes) {
  let text = "";
  for (const byte of bytes) text += String.fromCharCode(byte);
  return btoa(text);
}

// Nonces: nanoseconds since 1970 in bytes 0-7, then 32 random bits (the
// layout every client uses). The time part never repeats or goes back
// within a page, even for many packets in one millisecond.
let lastTime = 0n;
export function makeNonce() {
  let time = BigInt(Date.now()) * 1000000n;
  if (time <= lastTime) time = lastTime + 1n;
  lastTime = time;
  const nonce = new Uint8Array(12);
  new DataView(nonce.buffer).setBigUint64(0, time);
  globalThis.crypto.getRandomValues(nonce.subarray(8));
  return nonce;
}

// Step one: a fresh key pair (the private half cannot be exported) and
// the SESSION_INIT request that carries the public half.
export async function beginHandshake() {
  const pair = await subtle.generateKey(
    { name: "RSA-OAEP", modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" },
    false,
    ["encrypt", "decrypt"],
  );
  const spki = new Uint8Array(await subtle.exportKey("spki", pair.publicKey));
  return { request: { type: "SESSION_INIT", client_key: toBase64(spki) }, privateKey: pair.privateKey };
}

// Step two: check the reply and take the session key out of it. The
// fingerprint must be the SHA-256 of the key sent, the key must decrypt,
// and the server's signature over it must verify; otherwise nothing is
// adopted.
export async function finishHandshake(reply, privateKey) {
  if (typeof reply.session_id !== "string" || !/^[0-9a-f]{32}$/.test(reply.session_id)) {
    throw new HandshakeError("the server sent no usable session id");
  }
  const serverKey = fromHex(reply.server_pubkey);
  const fingerprint = toHex(new Uint8Array(await subtle.digest("SHA-256", serverKey)));
  if (fingerprint !== String(reply.fingerprint).toLowerCase()) throw new HandshakeError("the fingerprint is not that of the server's key");
  let sessionKey;
  try {
    sessionKey = new Uint8Array(await subtle.decrypt({ name: "RSA-OAEP" }, privateKey, fromHex(reply.encrypted_key)));
  } catch {
    throw new HandshakeError("the session key does not decrypt with this page's key");
  }
  const verifier = await subtle.importKey("spki", serverKey, { name: "RSA-PSS", hash: "SHA-256" }, false, ["verify"]);
  const signed = await subtle.verify({ name: "RSA-PSS", saltLength: 32 }, verifier, fromHex(reply.signature), sessionKey);
  if (!signed || sessionKey.length !== 32) throw new HandshakeError("the server's signature over the session key does not verify");
  return { sessionId: reply.session_id, keyHex: toHex(sessionKey), fingerprint };
}

// One session's envelope: seals inner packets into SECURE_MSG datagrams
// and opens the server's, refusing a nonce it has already seen.
export class Envelope {
  static async create(sessionId, keyHex) {
    const key = await subtle.importKey("raw", fromHex(keyHex), "AES-GCM", false, ["encrypt", "decrypt"]);
    return new Envelope(sessionId, key);
  }

  constructor(sessionId, key) {
    this.sessionId = sessionId;
    this.key = key;
    this.seen = new Set();
  }

  async seal(packet) {
    const nonce = makeNonce();
    const plain = new TextEncoder().encode(JSON.stringify(packet));
    const sealed = new Uint8Array(await subtle.encrypt({ name: "AES-GCM", iv: nonce }, this.key, plain));
    return JSON.stringify({ type: "SECURE_MSG", session_id: this.sessionId, nonce: toHex(nonce), ciphertext: toHex(sealed) });
  }

  // The inner packet, or null for a packet that is not this session's,
  // does not authenticate, or repeats a nonce.
  async open(outer) {
    if (outer.session_id !== undefined && outer.session_id !== this.sessionId) return null;
    if (typeof outer.nonce !== "string" || outer.nonce.length !== 24) return null;
    const nonce = outer.nonce.toLowerCase();
    if (this.seen.has(nonce)) return null;
    let plain;
    try {
      plain = await subtle.decrypt({ name: "AES-GCM", iv: fromHex(nonce) }, this.key, fromHex(outer.ciphertext));
    } catch {
      return null;
    }
    this.seen.add(nonce);
    // Retransmissions come within about a minute; older nonces need not
    // be kept for ever.
    if (this.seen.size > 4096) this.seen.delete(this.seen.values().next().value);
    try {
      const inner = JSON.parse(new TextDecoder().decode(plain));
      return inner && typeof inner === "object" && typeof inner.type === "string" ? inner : null;
    } catch {
      return null;
    }
  }
}
