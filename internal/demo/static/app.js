// Parley demo client: REST under /api/v1/chat (snake_case), WebSocket
// frames at /ws (camelCase), as README.md describes them. Every piece of
// user content is set with textContent or as an attribute value, never as
// HTML.
"use strict";

const API = "/api/v1/chat";
const $ = (id) => document.getElementById(id);

const state = {
  user: 0,
  token: "",
  ws: null,
  online: false,
  devToken: false, // the token came from the token endpoint, which can renew it
  wantOnline: true, // false while the user chose "Go offline"
  retry: 0,
  convs: new Map(), // id -> conversation view from REST
  open: "", // the conversation on screen
  msgs: new Map(), // conversation id -> Map(message id -> message)
  lastSeq: new Map(), // conversation id -> highest seq seen: catch up after it
  // clientMessageId -> {m, frame}: a message not acknowledged yet, sent
  // again (same clientMessageId, so at most one is stored) after a
  // reconnect or a retryable refusal.
  pending: new Map(),
  // message id -> status a receipt brought before the message was known
  // here: its delivery can reach the sender before the acknowledgment.
  early: new Map(),
  typingTimer: 0,
  resendTimer: 0,
  typingSentAt: 0,
  partnerTypingTimer: 0,
};

function status(text) { $("status").textContent = text || ""; }

// ---- REST ----------------------------------------------------------------

async function rest(method, path, body) {
  const opts = { method, headers: { Authorization: "Bearer " + state.token } };
  if (body instanceof FormData) {
    opts.body = body;
  } else if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const resp = await fetch(API + path, opts);
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    const e = data.error || {};
    throw new Error(`${method} ${path}: ${resp.status} ${e.code || ""} ${e.message || ""}`);
  }
  return data;
}

async function loadConversations() {
  const page = await rest("GET", "/conversations?page_size=100");
  for (const c of page.data) state.convs.set(c.id, c);
  renderConversations();
}

// catchUp asks for everything after the last sequence seen, page by page:
// after a reconnect nothing sent meanwhile is missed.
async function catchUp(convId) {
  let after = state.lastSeq.get(convId) || 0;
  for (;;) {
    const page = await rest("GET", `/conversations/${encodeURIComponent(convId)}/messages?after_seq=${after}&page_size=100`);
    for (const m of page.data) addMessage(fromRest(m));
    if (!page.has_more || page.data.length === 0) break;
    after = page.next_after_seq || page.data[page.data.length - 1].seq;
  }
  if (convId === state.open) { renderMessages(); markVisibleRead(); }
}

function fromRest(m) {
  return {
    id: m.id, conversationId: m.conversation_id, seq: m.seq || 0, senderId: m.sender_id,
    contentType: m.content_type, text: m.text_content || "", thumb: m.media_thumbnail_url || "",
    mediaUrl: m.media_url || "", createdAt: m.created_at,
    status: m.read_at ? "read" : m.delivered_at ? "delivered" : "sent",
  };
}

function fromPush(d) {
  return {
    id: d.id, conversationId: d.conversationId, seq: 0, senderId: d.senderId,
    contentType: d.contentType, text: d.textContent || "", thumb: "", mediaUrl: d.mediaUrl || "",
    createdAt: d.createdAt, status: "sent",
  };
}

const rank = { failed: 0, pending: 0, sent: 1, delivered: 2, read: 3 };

// addMessage merges a message into its conversation: frames may arrive more
// than once and catch-up repeats what pushes brought, so merge by id and
// never move a status backwards.
function addMessage(m) {
  if (!state.msgs.has(m.conversationId)) state.msgs.set(m.conversationId, new Map());
  const conv = state.msgs.get(m.conversationId);
  const old = conv.get(m.id);
  if (old) {
    old.seq = old.seq || m.seq;
    old.thumb = old.thumb || m.thumb;
    old.mediaUrl = old.mediaUrl || m.mediaUrl;
    if (rank[m.status] > rank[old.status]) old.status = m.status;
  } else {
    conv.set(m.id, m);
  }
  if (m.seq > (state.lastSeq.get(m.conversationId) || 0)) state.lastSeq.set(m.conversationId, m.seq);
}

function findMessage(convId, id) {
  const conv = state.msgs.get(convId);
  return conv ? conv.get(id) : undefined;
}

// ---- WebSocket -----------------------------------------------------------

function connect() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${proto}//${location.host}/ws?token=${encodeURIComponent(state.token)}`);
  state.ws = ws;
  ws.onmessage = (ev) => {
    let f;
    try { f = JSON.parse(ev.data); } catch { return; }
    onFrame(f);
  };
  ws.onclose = (ev) => {
    if (state.ws !== ws) return;
    state.ws = null;
    setOnline(false);
    if (ev.code === 4001) {
      // The token expired: a fresh one from the token endpoint, or sign in
      // again with a pasted one.
      if (state.devToken) fetchToken(state.user).then((t) => { state.token = t.token; connect(); }, (e) => status(e.message));
      else status("the token expired: reload and sign in with a fresh one");
      return;
    }
    if (!state.wantOnline) return;
    // Back off, up to 10 s, then connect again and catch up.
    const wait = Math.min(10000, 500 * 2 ** state.retry++);
    setTimeout(() => { if (state.wantOnline && !state.ws) connect(); }, wait);
  };
}

function send(action, data) {
  if (!state.ws || state.ws.readyState !== WebSocket.OPEN) return false;
  state.ws.send(JSON.stringify(data === undefined ? { action } : { action, data }));
  return true;
}

function setOnline(on) {
  state.online = on;
  $("conn").textContent = on ? "online" : "offline";
  $("conn").className = "conn " + (on ? "on" : "off");
  $("toggle").textContent = state.wantOnline ? "Go offline" : "Go online";
}

async function onConnected() {
  state.retry = 0;
  setOnline(true);
  status("");
  // Whatever happened while the socket was down comes from REST.
  try {
    await loadConversations();
    for (const id of state.convs.keys()) await catchUp(id);
  } catch (e) { status(e.message); }
  resendPending();
}

function resendPending() {
  for (const p of state.pending.values()) send("sendMessage", p.frame);
}

function onFrame(f) {
  const d = f.data || {};
  switch (f.type) {
    case "connected": onConnected(); break;
    case "acknowledgment": {
      const p = state.pending.get(f.clientMessageId);
      if (!p) break;
      state.pending.delete(f.clientMessageId);
      const m = p.m;
      m.id = f.messageId;
      m.conversationId = f.conversationId;
      m.createdAt = f.createdAt;
      m.status = state.early.get(m.id) || "sent";
      state.early.delete(m.id);
      addMessage(m);
      refreshAfterSend(m);
      break;
    }
    case "newMessage": {
      addMessage(fromPush(d));
      if (!state.convs.has(d.conversationId)) loadConversations().catch((e) => status(e.message));
      bumpConversation(d.conversationId, d);
      if (d.senderId !== state.user && d.conversationId === state.open) showPartnerTyping(false);
      if (d.conversationId === state.open) { renderMessages(); markVisibleRead(); }
      break;
    }
    case "messageDelivered": setStatus(d.conversationId, [d.messageId], "delivered"); break;
    case "messageRead":
      if (d.readerId !== state.user) setStatus(d.conversationId, d.messageIds || [], "read");
      break;
    case "messageUpdated": {
      const m = findMessage(d.conversationId, d.messageId);
      if (m && d.mediaThumbnailUrl) { m.thumb = d.mediaThumbnailUrl; if (d.conversationId === state.open) renderMessages(); }
      break;
    }
    case "typing":
      if (d.conversationId === state.open && d.userId !== state.user) showPartnerTyping(d.isTyping);
      break;
    case "error": onError(f); break;
  }
}

// onError shows a refused frame. A send refused for now (overloaded,
// unavailable, rate limited) is sent again after retryAfterMs; one refused
// for good is the oldest waiting, as the server answers a connection's
// frames in order.
function onError(f) {
  status(`${f.action || "frame"}: ${f.code}: ${f.message}`);
  if (f.action !== "sendMessage" || state.pending.size === 0) return;
  if (f.retryAfterMs) {
    clearTimeout(state.resendTimer);
    state.resendTimer = setTimeout(resendPending, f.retryAfterMs + Math.random() * 500);
    return;
  }
  const [id, p] = state.pending.entries().next().value;
  state.pending.delete(id);
  p.m.status = "failed";
  if (p.m.conversationId === state.open) renderMessages();
}

function setStatus(convId, ids, st) {
  for (const id of ids) {
    const m = findMessage(convId, id);
    if (m && rank[st] > rank[m.status]) m.status = st;
    // Not acknowledged yet: kept for the acknowledgment (at most a few).
    if (!m && state.pending.size > 0 && rank[st] > rank[state.early.get(id) || "sent"]) {
      state.early.set(id, st);
      if (state.early.size > 100) state.early.delete(state.early.keys().next().value);
    }
  }
  if (convId === state.open) renderMessages();
}

// markVisibleRead sends one markRead for the partner's messages on screen
// that are not read yet, only while the page is visible.
function markVisibleRead() {
  if (document.visibilityState !== "visible" || !state.open) return;
  const conv = state.msgs.get(state.open);
  if (!conv) return;
  const ids = [];
  for (const m of conv.values()) {
    if (m.senderId !== state.user && m.status !== "read") { ids.push(m.id); m.status = "read"; }
  }
  const c = state.convs.get(state.open);
  if (c) { c.unread_count = 0; renderConversations(); }
  if (ids.length) send("markRead", { conversationId: state.open, messageIds: ids });
}

// ---- sending -------------------------------------------------------------

function newClientId() {
  return (crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random()).toString();
}

function sendMessage(data, local) {
  if (!state.open) { status("pick a conversation first"); return; }
  const clientMessageId = newClientId();
  const m = Object.assign({ id: "pending-" + clientMessageId, conversationId: state.open, seq: 0,
    senderId: state.user, status: "pending", thumb: "", mediaUrl: "", createdAt: new Date().toISOString() }, local);
  const frame = Object.assign({ conversationId: state.open, clientMessageId }, data);
  state.pending.set(clientMessageId, { m, frame });
  // Offline, it waits: onConnected sends what is pending.
  if (!send("sendMessage", frame)) status("offline: the message is sent when the connection is back");
  addMessage(m);
  renderMessages();
}

function refreshAfterSend(m) {
  const conv = state.msgs.get(m.conversationId);
  for (const [id, x] of conv) if (x === m && id !== m.id) conv.delete(id);
  conv.set(m.id, m);
  bumpConversation(m.conversationId, { textContent: m.text, contentType: m.contentType });
  if (m.conversationId === state.open) renderMessages();
}

async function sendImage(file) {
  const form = new FormData();
  form.append("file", file);
  status("uploading " + file.name + "…");
  try {
    const up = await rest("POST", "/upload", form);
    status("");
    sendMessage({ contentType: "image", mediaKey: up.key }, { contentType: "image", text: "", mediaUrl: up.url });
  } catch (e) { status(e.message); }
}

function onTypingInput() {
  const c = state.convs.get(state.open);
  if (!c) return;
  const now = Date.now();
  // One typing frame every 2 s while keys are pressed, and a stop after 3 s
  // without one: within the server's typing rate limit.
  if (now - state.typingSentAt > 2000) {
    send("typing", { conversationId: state.open, recipientId: c.other_user_id, isTyping: true });
    state.typingSentAt = now;
  }
  clearTimeout(state.typingTimer);
  state.typingTimer = setTimeout(stopTyping, 3000);
}

function stopTyping() {
  clearTimeout(state.typingTimer);
  const c = state.convs.get(state.open);
  if (!c || !state.typingSentAt) return;
  state.typingSentAt = 0;
  send("typing", { conversationId: state.open, recipientId: c.other_user_id, isTyping: false });
}

function showPartnerTyping(on) {
  const c = state.convs.get(state.open);
  $("typing").textContent = on && c ? `user ${c.other_user_id} is typing…` : "";
  clearTimeout(state.partnerTypingTimer);
  // A lost "stopped typing" frame must not leave the indicator on.
  if (on) state.partnerTypingTimer = setTimeout(() => showPartnerTyping(false), 6000);
}

// ---- rendering -----------------------------------------------------------

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function bumpConversation(convId, d) {
  const c = state.convs.get(convId);
  if (!c) return;
  c.last_message = { text_content: d.textContent || "", content_type: d.contentType };
  if (d.senderId && d.senderId !== state.user && convId !== state.open) c.unread_count = (c.unread_count || 0) + 1;
  renderConversations();
}

function renderConversations() {
  const ul = $("conversations");
  ul.replaceChildren();
  for (const c of state.convs.values()) {
    const li = el("li", c.id === state.open ? "active" : "");
    li.dataset.id = c.id;
    li.append(el("strong", "", "user " + c.other_user_id));
    if (c.unread_count > 0) li.append(el("span", "unread", String(c.unread_count)));
    const lm = c.last_message;
    li.append(el("span", "preview", lm ? (lm.content_type === "text" ? lm.text_content || "" : "[" + lm.content_type + "]") : "no messages yet"));
    li.onclick = () => openConversation(c.id);
    ul.append(li);
  }
}

// safeURL: only http(s) URLs are loaded or opened; a message's media_url
// can come from its sender.
function safeURL(u) {
  try { return u !== "" && ["http:", "https:"].includes(new URL(u, location.href).protocol); } catch { return false; }
}

const ticks = { failed: "not sent", pending: "…", sent: "✓", delivered: "✓✓", read: "✓✓" };

function renderMessages() {
  const ol = $("messages");
  const conv = state.msgs.get(state.open) || new Map();
  const list = [...conv.values()].sort((a, b) => (a.createdAt < b.createdAt ? -1 : a.createdAt > b.createdAt ? 1 : 0));
  const atBottom = ol.scrollHeight - ol.scrollTop - ol.clientHeight < 40;
  ol.replaceChildren();
  for (const m of list) {
    const mine = m.senderId === state.user;
    const li = el("li", "msg" + (mine ? " mine" : ""));
    li.dataset.id = m.id;
    li.dataset.status = m.status;
    if (m.contentType === "image") {
      if (safeURL(m.thumb)) {
        const img = el("img", "thumb");
        img.alt = "image";
        img.src = m.thumb;
        if (safeURL(m.mediaUrl)) { img.onclick = () => window.open(m.mediaUrl, "_blank", "noopener"); }
        li.append(img);
      } else {
        li.append(el("span", "pending", "image: making its thumbnail…"));
      }
    } else if (m.contentType === "text") {
      li.append(el("span", "text", m.text));
    } else {
      li.append(el("span", "pending", "[" + m.contentType + "]"));
    }
    const meta = el("span", "meta", new Date(m.createdAt).toLocaleTimeString());
    if (mine) meta.append(el("span", "ticks", ticks[m.status]));
    li.append(meta);
    ol.append(li);
  }
  if (atBottom) ol.scrollTop = ol.scrollHeight;
}

async function openConversation(id) {
  stopTyping();
  state.open = id;
  const c = state.convs.get(id);
  $("conv-title").textContent = "Conversation with user " + c.other_user_id;
  $("compose").hidden = false;
  showPartnerTyping(false);
  renderConversations();
  renderMessages();
  try { await catchUp(id); } catch (e) { status(e.message); }
}

// ---- sign-in and controls ------------------------------------------------

async function fetchToken(user) {
  const resp = await fetch("/dev/token", { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ user_id: user }) });
  const data = await resp.json().catch(() => ({}));
  if (resp.status === 404) { $("token-form").hidden = false; throw new Error((data.error || {}).message || "no token endpoint"); }
  if (!resp.ok) throw new Error((data.error || {}).message || "sign-in failed: " + resp.status);
  return data;
}

async function signIn(user) {
  const t = await fetchToken(user);
  state.devToken = true;
  start(t.token, t.user_id);
}

function start(token, user) {
  state.token = token;
  state.user = user;
  $("me").textContent = "signed in as user " + user;
  $("signin").hidden = true;
  $("chat").hidden = false;
  $("toggle").hidden = false;
  connect();
}

// userFromToken reads the user id of a pasted token (its sub claim); the
// server checks the token itself.
function userFromToken(token) {
  const part = token.split(".")[1] || "";
  const claims = JSON.parse(atob(part.replace(/-/g, "+").replace(/_/g, "/")));
  const id = Number(claims.sub || claims.user_id);
  if (!Number.isSafeInteger(id) || id <= 0) throw new Error("the token names no user id");
  return id;
}

function positiveInt(v) {
  const n = Number(v);
  return Number.isSafeInteger(n) && n > 0 ? n : 0;
}

function init() {
  $("signin-form").onsubmit = (ev) => {
    ev.preventDefault();
    const user = positiveInt($("user-id").value);
    if (!user) { $("signin-error").textContent = "a user id is a positive integer"; return; }
    signIn(user).catch((e) => { $("signin-error").textContent = e.message; });
  };
  $("token-form").onsubmit = (ev) => {
    ev.preventDefault();
    const token = $("token").value.trim();
    try { start(token, userFromToken(token)); } catch (e) { $("signin-error").textContent = e.message; }
  };
  $("new-conv").onsubmit = async (ev) => {
    ev.preventDefault();
    const peer = positiveInt($("peer-id").value);
    if (!peer) { status("a user id is a positive integer"); return; }
    try {
      const c = await rest("POST", "/conversations", { recipient_id: peer });
      state.convs.set(c.id, Object.assign(state.convs.get(c.id) || {}, c));
      await openConversation(c.id);
    } catch (e) { status(e.message); }
  };
  $("compose").onsubmit = (ev) => {
    ev.preventDefault();
    const text = $("text").value;
    if (!text.trim()) return;
    stopTyping();
    sendMessage({ contentType: "text", textContent: text }, { contentType: "text", text });
    $("text").value = "";
  };
  $("text").oninput = onTypingInput;
  $("image").onchange = () => {
    const f = $("image").files[0];
    if (f) sendImage(f);
    $("image").value = "";
  };
  $("toggle").onclick = () => {
    state.wantOnline = !state.wantOnline;
    if (state.wantOnline) connect();
    else if (state.ws) { const ws = state.ws; state.ws = null; ws.close(1000); setOnline(false); }
    setOnline(state.online && state.wantOnline);
  };
  document.addEventListener("visibilitychange", markVisibleRead);
  // /?user=N signs in at once: two windows, /?user=1 and /?user=2.
  const user = positiveInt(new URLSearchParams(location.search).get("user"));
  if (user) signIn(user).catch((e) => { $("signin-error").textContent = e.message; });
}

init();
