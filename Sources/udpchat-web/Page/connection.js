// The page's link to the server: a WebSocket to udpchat-web's /ws, the
// handshake on it, the envelope, acknowledgements, the keep-alive, and a
// new WebSocket when the old one drops. After every handshake the session
// before it (kept in localStorage, as the original web client keeps it)
// is merged into the new one with MERGE_SESSION, so a reload or a
// reconnect stays logged in.

import { beginHandshake, finishHandshake, Envelope, HandshakeError } from "./wire.js";

const PIN = "server-fingerprint";
const SESSION_ID = "session-id";
const SESSION_KEY = "session-key";
const KEEP_ALIVE_MS = 10000;
const HANDSHAKE_MS = 10000;

export class Connection extends EventTarget {
  constructor(url, storage = globalThis.localStorage) {
    super();
    this.url = url;
    this.storage = storage;
    this.socket = null;
    this.envelope = null;
    this.pending = null; // { privateKey } while a handshake is out
    this.held = null; // a verified session waiting for the user to trust a changed key
    this.retry = 0;
    this.timers = {};
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  get fingerprint() {
    return this.storage.getItem(PIN);
  }

  open() {
    clearTimeout(this.timers.reconnect);
    const socket = new WebSocket(this.url);
    this.socket = socket;
    this.envelope = null;
    this.emit("state", { text: "Connecting…" });
    socket.onopen = () => this.handshake(socket);
    socket.onmessage = (event) => this.received(socket, event.data);
    socket.onclose = (event) => this.closed(socket, event);
  }

  async handshake(socket) {
    this.emit("state", { text: "Securing the connection…" });
    const { request, privateKey } = await beginHandshake();
    if (socket !== this.socket) return;
    this.pending = { privateKey };
    socket.send(JSON.stringify(request));
    clearTimeout(this.timers.handshake);
    this.timers.handshake = setTimeout(() => {
      if (socket === this.socket && !this.envelope && !this.held) socket.close(4000, "no handshake reply");
    }, HANDSHAKE_MS);
  }

  async received(socket, text) {
    if (socket !== this.socket) return;
    let outer;
    try {
      outer = JSON.parse(text);
    } catch {
      return;
    }
    if (outer.type === "SESSION_INIT" && this.pending) {
      const { privateKey } = this.pending;
      this.pending = null;
      try {
        const session = await finishHandshake(outer, privateKey);
        const pinned = this.fingerprint;
        if (pinned && pinned !== session.fingerprint) {
          this.held = session;
          this.emit("keychanged", { pinned, offered: session.fingerprint });
          return;
        }
        await this.adopt(session);
      } catch (error) {
        const why = error instanceof HandshakeError ? error.message : String(error);
        this.emit("failed", { text: `The server's handshake failed: ${why}.` });
        socket.close(4001, "handshake failed");
      }
    } else if (outer.type === "SECURE_MSG" && this.envelope) {
      const inner = await this.envelope.open(outer);
      if (!inner) return;
      if (typeof inner.msg_id === "string" && inner.msg_id) this.send("ACK", { msg_id: inner.msg_id });
      this.emit("packet", inner);
    } else if (outer.type === "SERVER_ERROR") {
      this.serverError(String(outer.message ?? ""));
    }
  }

  // The user chose to trust the server's new key.
  async trustNewKey() {
    const session = this.held;
    if (!session) return;
    this.held = null;
    this.storage.setItem(PIN, session.fingerprint);
    // The old session's key is no credential to hand a server with another
    // key: the page starts logged out.
    this.forget();
    if (this.socket?.readyState === WebSocket.OPEN) await this.adopt(session);
    else this.open();
  }

  async adopt(session) {
    this.envelope = await Envelope.create(session.sessionId, session.keyHex);
    this.retry = 0;
    this.storage.setItem(PIN, session.fingerprint);
    const previous = { id: this.storage.getItem(SESSION_ID), key: this.storage.getItem(SESSION_KEY) };
    this.storage.setItem(SESSION_ID, session.sessionId);
    this.storage.setItem(SESSION_KEY, session.keyHex);
    this.emit("session", { fingerprint: session.fingerprint, resuming: Boolean(previous.id && previous.key) });
    if (previous.id && previous.key && previous.id !== session.sessionId) {
      this.send("MERGE_SESSION", { old_session_id: previous.id, old_session_key: previous.key });
    }
    clearInterval(this.timers.keepAlive);
    this.timers.keepAlive = setInterval(() => this.send("STATUS", {}), KEEP_ALIVE_MS);
  }

  async send(type, data) {
    const socket = this.socket;
    if (!this.envelope || !socket || socket.readyState !== WebSocket.OPEN) return false;
    socket.send(await this.envelope.seal({ type, data }));
    return true;
  }

  serverError(message) {
    // A session the server no longer knows (it expired) needs a new
    // handshake; the merge then brings the login back if it can.
    if (/^Session ID .* not found$/.test(message)) {
      this.socket?.close(4002, "session gone");
      return;
    }
    this.emit("servererror", { text: message });
  }

  closed(socket, event) {
    if (socket !== this.socket) return;
    clearInterval(this.timers.keepAlive);
    clearTimeout(this.timers.handshake);
    this.envelope = null;
    this.pending = null;
    if (this.held) return; // waiting for the user; trusting reconnects
    const delay = Math.min(30000, 500 * 2 ** this.retry);
    this.retry += 1;
    const reason = event.reason ? `: ${event.reason}` : "";
    this.emit("state", { text: `Disconnected${reason}. Reconnecting in ${Math.round(delay / 1000)} s…`, offline: true });
    this.timers.reconnect = setTimeout(() => this.open(), delay);
  }

  // Log out here: the session stays, but no longer as anyone, so the next
  // reload starts logged out.
  forget() {
    this.storage.removeItem(SESSION_ID);
    this.storage.removeItem(SESSION_KEY);
  }
}
