// The original React client's helper modules (client/src/helpers: utils.js,
// secureTransport.js, messageRouter.js), unchanged, driven in Node through a
// WebSocket bridge: two people log in, make and join a room, and write to
// each other. The handshake is done as the client's useSession.js does it
// (RSA-OAEP SHA-256 key of its own, fingerprint, PSS salt 32), with WebCrypto.
//
//   node --import ./resolve-hook.mjs original_web_client.mjs HELPERS_DIR WS_URL TAG
//
// Prints one JSON line; exits 0 when everything arrived.

import { pathToFileURL } from "node:url";
import { webcrypto } from "node:crypto";
import WebSocket from "/usr/share/nodejs/ws/index.js";

const [helpers, url, tag] = process.argv.slice(2);
const load = (name) => import(pathToFileURL(`${helpers}/${name}.js`).href);
const { sendEncrypted, receiveEncrypted } = await load("secureTransport");
const { registerHandler, messageRouter } = await load("messageRouter");
const { bytesToHex, hexToBytes } = await load("utils");
const subtle = webcrypto.subtle;

const deadline = setTimeout(() => finish(false, "timed out"), 20000);
function finish(ok, why) {
  console.log(JSON.stringify({ ok, why, url }));
  process.exit(ok ? 0 : 1);
}

// One person: a WebSocket, a session, and what arrived for it.
class Person {
  constructor(name) {
    this.name = name;
    this.waiting = [];
    this.seenNonces = new Set();
  }

  async connect() {
    const pair = await subtle.generateKey(
      { name: "RSA-OAEP", modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" }, true, ["encrypt", "decrypt"]);
    const spki = new Uint8Array(await subtle.exportKey("spki", pair.publicKey));
    this.socket = new WebSocket(url);
    this.socket.on("message", (data) => messageRouter({ ...JSON.parse(data.toString()), to: this }));
    await new Promise((resolve, reject) => { this.socket.on("open", resolve); this.socket.on("error", reject); });
    const reply = this.next("SESSION_INIT");
    this.socket.send(JSON.stringify({ type: "SESSION_INIT", client_key: Buffer.from(spki).toString("base64") }));
    const init = await reply;
    const serverKey = hexToBytes(init.server_pubkey);
    const fingerprint = bytesToHex(new Uint8Array(await subtle.digest("SHA-256", serverKey)));
    if (fingerprint !== init.fingerprint) throw new Error("fingerprint mismatch");
    const key = new Uint8Array(await subtle.decrypt({ name: "RSA-OAEP" }, pair.privateKey, hexToBytes(init.encrypted_key)));
    const verifier = await subtle.importKey("spki", serverKey, { name: "RSA-PSS", hash: "SHA-256" }, false, ["verify"]);
    if (!(await subtle.verify({ name: "RSA-PSS", saltLength: 32 }, verifier, hexToBytes(init.signature), key))) {
      throw new Error("signature does not verify");
    }
    this.state = { socket: this.socket, aesKey: bytesToHex(key), sessionId: init.session_id };
  }

  // The next inner packet (or SESSION_INIT) of `type` that arrives.
  next(type, match = () => true) {
    return new Promise((resolve) => this.waiting.push({ type, match, resolve }));
  }

  deliver(packet) {
    const index = this.waiting.findIndex((w) => w.type === packet.type && w.match(packet));
    if (index >= 0) this.waiting.splice(index, 1)[0].resolve(packet);
  }

  async send(type, data, answer, match) {
    const reply = answer ? this.next(answer, match) : null;
    await sendEncrypted({ type, data }, this.state);
    return reply;
  }
}

// As the client's AppContext does: SECURE_MSG through receiveEncrypted,
// broadcasts acknowledged.
registerHandler("SESSION_INIT", (message) => message.to.deliver(message));
registerHandler("SECURE_MSG", (message) => {
  const person = message.to;
  receiveEncrypted(message, {
    aesKey: person.state.aesKey,
    seenNonces: person.seenNonces,
    handleSecurePayload: (payload) => {
      if (payload.msg_id) sendEncrypted({ type: "ACK", data: { msg_id: payload.msg_id } }, person.state);
      person.deliver(payload);
    },
  });
});

try {
  const alice = new Person("alice");
  const bob = new Person("bob");
  await alice.connect();
  await bob.connect();
  await alice.send("LOGIN", { email: `alice-${tag}@example.com` }, "WELCOME");
  await bob.send("LOGIN", { email: `bob-${tag}@example.com` }, "WELCOME");
  const created = await alice.send("CREATE_ROOM", { name: `Helpers ${tag}` }, "ROOM_CREATED");
  const room = created.data.room_id;
  await bob.send("JOIN_ROOM", { room_id: room }, "JOINED_ROOM");
  const toBob = bob.next("MESSAGE", (p) => p.data.content === `hello bob (${tag})`);
  await alice.send("MESSAGE", { room_id: room, content: `hello bob (${tag})` });
  await toBob;
  const toAlice = alice.next("MESSAGE", (p) => p.data.content === `hello alice (${tag})`);
  await bob.send("MESSAGE", { room_id: room, content: `hello alice (${tag})` });
  await toAlice;
  const history = await alice.send("LIST_MESSAGES", { room_id: room }, "ROOM_HISTORY");
  const contents = history.data.map((m) => m.content);
  clearTimeout(deadline);
  finish(contents.length === 2 && contents[0] === `hello bob (${tag})`, `history: ${JSON.stringify(contents)}`);
} catch (error) {
  finish(false, String(error));
}
