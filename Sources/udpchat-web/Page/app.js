// The chat page: what the user sees and does, on top of Connection.
// Every text from the server goes into the page through textContent,
// never as markup.

import { Connection } from "./connection.js";

const $ = (id) => document.getElementById(id);
const scheme = location.protocol === "https:" ? "wss:" : "ws:";
const connection = new Connection(`${scheme}//${location.host}/ws`);

const state = {
  user: null,
  rooms: [],
  room: null, // { room_id, name } of the open room
  messages: new Map(), // message_id -> message, of the open room
  members: new Map(), // user_id -> member, of the open room
};

function show(view) {
  $("login").hidden = view !== "login";
  $("chat").hidden = view !== "chat";
  $("identity").hidden = view !== "chat";
}

function say(text) {
  $("state").textContent = text;
}

function fail(text) {
  $("error").textContent = text;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// Login

$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const data = { email: $("email").value.trim() };
  if (!$("password-row").hidden && $("password").value) data.password = $("password").value;
  $("login-message").textContent = "";
  connection.send("LOGIN", data);
});

$("logout").addEventListener("click", () => {
  connection.send("LOGOUT", {});
  connection.forget();
  loggedOut();
});

// After a login, a reload or a reconnect: the room list, and the room
// that was open (or the user's last) read afresh, so nothing sent while
// the page was away is missing.
function loggedIn(user) {
  state.user = user;
  $("me").textContent = user.name || user.email;
  $("password").value = "";
  $("password-row").hidden = true;
  show("chat");
  say("Connected.");
  connection.send("LIST_ROOMS", {});
  const reopen = state.room ?? user.room;
  if (reopen?.room_id) connection.send("JOIN_ROOM", { room_id: reopen.room_id });
}

function loggedOut() {
  state.user = null;
  closeRoom();
  show("login");
  say("Connected: log in to chat.");
  $("email").focus();
}

// Rooms

$("create-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = $("room-name").value.trim();
  if (!name) return;
  connection.send("CREATE_ROOM", { name });
  $("room-name").value = "";
});

$("leave").addEventListener("click", () => {
  if (!state.room) return;
  connection.send("LEAVE_ROOM", { room_id: state.room.room_id });
  closeRoom();
});

function renderRooms() {
  const list = $("rooms");
  list.replaceChildren();
  for (const room of state.rooms) {
    const button = element("button", "", room.name);
    button.type = "button";
    button.dataset.roomId = room.room_id;
    if (state.room?.room_id === room.room_id) button.setAttribute("aria-current", "true");
    button.addEventListener("click", () => connection.send("JOIN_ROOM", { room_id: room.room_id }));
    const item = element("li");
    item.append(button);
    list.append(item);
  }
}

function openRoom(room) {
  if (state.room?.room_id !== room.room_id) {
    state.messages.clear();
    state.members.clear();
    $("messages").replaceChildren();
    renderMembers();
  }
  state.room = { room_id: room.room_id, name: room.name };
  $("room-title").textContent = room.name;
  $("leave").hidden = false;
  $("composer").hidden = false;
  renderRooms();
  connection.send("LIST_MEMBERS", { room_id: room.room_id });
  connection.send("LIST_MESSAGES", { room_id: room.room_id });
  $("draft").focus();
}

function closeRoom() {
  state.room = null;
  state.messages.clear();
  state.members.clear();
  $("room-title").textContent = "Choose a room";
  $("leave").hidden = true;
  $("composer").hidden = true;
  $("messages").replaceChildren();
  renderMembers();
  renderRooms();
}

// Messages, in the order the server committed them (message_id).

// Each message is put in its place once, before the first with a greater
// id, so a screen reader announces only what is new.
function addMessage(message) {
  if (typeof message.message_id !== "number" || state.messages.has(message.message_id)) return;
  state.messages.set(message.message_id, message);
  const list = $("messages");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  const item = element("li");
  item.dataset.messageId = String(message.message_id);
  const when = new Date((message.timestamp ?? 0) * 1000);
  const time = element("time", "", when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }));
  time.dateTime = when.toISOString();
  item.append(element("span", "name", message.name ?? "?"), time, element("p", "content", message.content ?? ""));
  const later = [...list.children].find((other) => Number(other.dataset.messageId) > message.message_id);
  list.insertBefore(item, later ?? null);
  if (atBottom) list.scrollTop = list.scrollHeight;
}


function renderMembers() {
  const list = $("members");
  list.replaceChildren();
  const ordered = [...state.members.values()].sort((a, b) => String(a.name).localeCompare(String(b.name)));
  for (const member of ordered) list.append(element("li", "", member.name ?? member.user_id));
}

$("composer").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!state.room) return;
  const mode = new FormData($("composer")).get("mode");
  const content = $("draft").value.trim();
  const room_id = state.room.room_id;
  let sent;
  if (mode === "bot") {
    sent = await connection.send("AI_MESSAGE", { room_id });
  } else if (!content) {
    return;
  } else if (mode === "helper") {
    sent = await connection.send("AI_MESSAGE", { room_id, content });
  } else {
    sent = await connection.send("MESSAGE", { room_id, content });
  }
  if (!sent) {
    fail("Not connected: nothing was sent. Your draft is kept; send it again once reconnected.");
    return;
  }
  // The draft goes once it is sent, and not if it changed meanwhile.
  if (mode !== "bot" && $("draft").value.trim() === content) $("draft").value = "";
  fail("");
});

// Enter sends; Shift+Enter starts a new line.
$("draft").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $("composer").requestSubmit();
  }
});

// What the server says

const handlers = {
  WELCOME: (data) => loggedIn(data.user),
  PLEASE_LOGIN: (data) => {
    show("login");
    $("email").value = data.email ?? $("email").value;
    $("password-row").hidden = false;
    $("login-message").textContent = data.message ?? "Type your password.";
    $("password").focus();
  },
  UNAUTHORISED: (data) => {
    $("login-message").textContent = data.message ?? "Not allowed.";
    $("password").value = "";
    $("password").focus();
  },
  MERGE_SESSION_FAILED: () => loggedOut(),
  STATUS: (data) => {
    const user = data.user;
    if (user && user.user_id) {
      if (!state.user) loggedIn(user);
    } else if (state.user) {
      loggedOut();
    }
  },
  ROOM_LIST: (data) => {
    state.rooms = Array.isArray(data) ? data : [];
    renderRooms();
  },
  ROOM_CREATED: (data) => openRoom(data),
  JOINED_ROOM: (data) => openRoom(data),
  ROOM_LEFT: (data) => {
    if (state.room?.room_id === data.room_id) closeRoom();
  },
  ROOM_HISTORY: (data, packet) => {
    if (!state.room || (packet.room_id && packet.room_id !== state.room.room_id)) return;
    for (const item of Array.isArray(data) ? data : []) addMessage(item);
  },
  ROOM_MEMBERS: (data, packet) => {
    if (!state.room || (packet.room_id && packet.room_id !== state.room.room_id)) return;
    state.members.clear();
    for (const member of Array.isArray(data) ? data : []) state.members.set(member.user_id, member);
    renderMembers();
  },
  MESSAGE: (data) => {
    if (state.room?.room_id === data.room_id) addMessage(data);
  },
  MEMBER_JOINED: (data) => {
    if (state.room?.room_id !== data.room_id || !data.member) return;
    state.members.set(data.member.user_id, data.member);
    renderMembers();
  },
  MEMBER_LEFT: (data) => {
    if (state.room?.room_id !== data.room_id) return;
    state.members.delete(data.member_id);
    renderMembers();
  },
  ERROR: (data) => {
    const text = data.message ?? "The server refused that.";
    if (!$("login").hidden) $("login-message").textContent = text;
    else fail(text);
  },
};

connection.addEventListener("packet", (event) => {
  const packet = event.detail;
  handlers[packet.type]?.(packet.data ?? {}, packet);
});

connection.addEventListener("state", (event) => {
  say(event.detail.text);
  if (event.detail.offline) $("composer").setAttribute("aria-disabled", "true");
});

connection.addEventListener("session", (event) => {
  $("fingerprint").textContent = event.detail.fingerprint;
  $("key-warning").hidden = true;
  $("composer").removeAttribute("aria-disabled");
  if (event.detail.resuming) {
    // WELCOME or MERGE_SESSION_FAILED follows.
    say(state.user ? "Reconnected." : "Resuming your session…");
  } else {
    loggedOut();
  }
});

connection.addEventListener("keychanged", (event) => {
  $("pinned-fingerprint").textContent = event.detail.pinned;
  $("offered-fingerprint").textContent = event.detail.offered;
  $("key-warning").hidden = false;
  show("none");
  say("Stopped: the server's key has changed.");
  $("trust-key").focus();
});

$("trust-key").addEventListener("click", () => connection.trustNewKey());

connection.addEventListener("failed", (event) => fail(event.detail.text));
connection.addEventListener("servererror", (event) => fail(event.detail.text));

if (!globalThis.crypto?.subtle) {
  say("This page needs a secure context (https://, or http://127.0.0.1 or localhost) for its cryptography.");
} else {
  connection.open();
}
