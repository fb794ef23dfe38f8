// The chat page's script (index.html), served at /app.js: the page's Content-Security-Policy
// runs no inline script.
"use strict";
// Plain DOM, no build step. Text from the server (titles, names, messages) is only ever set
// with textContent, never as HTML.
const $ = (id) => document.getElementById(id);
const list = $("messages");
const DEFAULT_ROOM = "book-1";
const ROOM_NAME = /^[a-z0-9][a-z0-9-]{0,63}$/;
// The name shown to others while following: the server's rule (openapi.yaml, FollowerName).
const HIDDEN = "\\x00-\\x1f\\x7f-\\x9f\\u00ad\\u200b-\\u200f\\u2028-\\u202e\\u2060-\\u206f\\ufeff";
const FOLLOWER_NAME = new RegExp(`^[^\\s${HIDDEN}](?:[^${HIDDEN}]*[^\\s${HIDDEN}])?$`);
const MAX_ROOM_PAGES = 10;
const ROOMS_REFRESH_MS = 20000;
const REFOLLOW_MS = 3000;

let room = null;        // the open room's name
let stream = null;      // its EventSource
let opening = 0;        // the latest open(): earlier ones that are still awaiting give up
let rooms = [];         // the listing, as last loaded
const shown = new Set();

// -- messages -----------------------------------------------------------------------------------

function colour(name) {
  let hash = 0;
  for (const ch of name) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return `hsl(${hash % 360} 45% 42%)`;
}

function render(message) {
  if (shown.has(message.id)) return;
  shown.add(message.id);
  const item = document.createElement("li");
  item.dataset.id = message.id;
  const avatar = document.createElement("span");
  avatar.className = "avatar";
  avatar.setAttribute("aria-hidden", "true");
  avatar.textContent = [...message.author.trim()][0] || "?";
  avatar.style.background = colour(message.author);
  const body = document.createElement("div");
  const meta = document.createElement("div");
  meta.className = "meta";
  const author = document.createElement("span");
  author.className = "author";
  author.textContent = message.author;
  const time = document.createElement("time");
  time.dateTime = message.created_at;
  time.textContent = new Date(message.created_at).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
  time.title = new Date(message.created_at).toLocaleString();
  meta.append(author, time);
  if (message.verified === false) {
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.textContent = "unverified";
    badge.title = "books could not confirm this book when the message was posted";
    meta.append(badge);
  }
  const text = document.createElement("div");
  text.className = "text";
  text.textContent = message.text;
  body.append(meta, text);
  item.append(avatar, body);
  // Keep the list in id order even when history and live events interleave.
  const later = [...list.children].find((li) => Number(li.dataset.id) > message.id);
  list.insertBefore(item, later || null);
  list.scrollTop = list.scrollHeight;
  const entry = rooms.find((r) => r.name === message.room);
  if (entry && !(entry.last_message_at >= message.created_at)) {
    entry.last_message_at = message.created_at;
    redrawRooms();
  }
}

function setStatus(state, text) {
  $("status").dataset.state = state;
  $("status").textContent = text;
}

async function problem(response) {
  try { return (await response.json()).detail || response.statusText; }
  catch { return response.statusText; }
}

// -- who is live ------------------------------------------------------------------------------

function liveText(live) {
  const guests = live.count - live.names.length;
  const people = [...live.names];
  if (guests > 0) people.push(guests === 1 ? "1 guest" : `${guests} guests`);
  if (people.length > 1) return people.slice(0, -1).join(", ") + " and " + people.at(-1);
  return people[0] || "";
}

function showPresence(live) {
  const box = $("presence");
  box.dataset.state = "live";
  const dot = document.createElement("span");
  dot.className = "dot";
  const count = document.createElement("span");
  count.className = "count";
  count.textContent = `${live.count} live`;
  const names = document.createElement("span");
  names.className = "names";
  names.textContent = liveText(live);
  box.replaceChildren(dot, count, names);
  box.title = live.count === 1 ? "Only this page follows the room" : "";
  const entry = rooms.find((r) => r.name === room);
  if (entry) { entry.live = live; redrawRooms(); }
}

// -- following the open room --------------------------------------------------------------------

function followerName() {
  const name = $("author").value.trim();
  return name.length <= 32 && FOLLOWER_NAME.test(name) ? name : "";
}

function follow(name, token) {
  if (stream) stream.close();
  const query = new URLSearchParams({presence: "true"});
  const me = followerName();
  if (me) query.set("name", me);
  const source = new EventSource(`/rooms/${encodeURIComponent(name)}/events?${query}`);
  stream = source;
  source.addEventListener("open", () => setStatus("live", "Live"));
  source.addEventListener("message", (event) => render(JSON.parse(event.data)));
  source.addEventListener("presence", (event) => showPresence(JSON.parse(event.data)));
  source.addEventListener("error", () => {
    setStatus("waiting", "Reconnecting…");
    $("presence").dataset.state = "waiting";
    // The browser reconnects by itself (with Last-Event-ID) unless the server refused the
    // stream: then follow again a little later and fill any gap from the history.
    if (source.readyState === EventSource.CLOSED) {
      setTimeout(() => { if (stream === source && token === opening) refollow(); }, REFOLLOW_MS);
    }
  });
}

async function loadHistory(name, token) {
  try {
    const history = await fetch(`/rooms/${encodeURIComponent(name)}/messages?limit=50`);
    if (token !== opening || !history.ok) return;
    const page = await history.json();
    if (token === opening) page.items.reverse().forEach(render);
  } catch { /* the stream's reconnect or the next refollow fills the gap */ }
}

function refollow() {
  if (!room) return;
  follow(room, opening);
  loadHistory(room, opening);  // a new stream starts at the newest message: fill the gap
}

async function open(name) {
  // Resolves to whether the room opened.
  const token = ++opening;
  if (stream) { stream.close(); stream = null; }
  room = name;
  shown.clear();
  list.replaceChildren();
  $("error").textContent = "";
  $("presence").replaceChildren();
  setStatus("waiting", "Connecting…");
  drawRooms();
  let info;
  try { info = await fetch(`/rooms/${encodeURIComponent(name)}`); }
  catch { info = null; }
  if (token !== opening) return false;
  if (!info || !info.ok) {
    $("room-title").textContent = "No room open";
    $("room-kind").textContent = "";
    $("error").textContent = info ? await problem(info) : "The chat cannot be reached.";
    setStatus("idle", "Choose a room");
    room = null;
    drawRooms();
    return false;
  }
  const details = await info.json();
  if (token !== opening) return false;
  $("room-title").textContent = details.title;
  $("room-kind").textContent = details.kind === "book"
    ? `About book ${details.book_id} · ${details.name}` : `Room · ${details.name}`;
  document.title = `${details.title} · Bookshop chat`;
  follow(name, token);
  setTimeout(loadRooms, 500);  // the other rooms' counts (the one just left among them)
  await loadHistory(name, token);
  return true;
}

function roomFromHash() {
  try {
    const name = decodeURIComponent(location.hash.slice(1));
    return name || null;
  } catch { return null; }
}

// -- the room list ------------------------------------------------------------------------------

function ago(timestamp) {
  const minutes = Math.round((Date.now() - new Date(timestamp)) / 60000);
  if (minutes < 1) return "active just now";
  if (minutes < 60) return `active ${minutes} min ago`;
  if (minutes < 60 * 24) return `active ${Math.round(minutes / 60)} h ago`;
  return `active ${new Date(timestamp).toLocaleDateString()}`;
}

let drawing = false;
function redrawRooms() {  // many changes at once: one redraw
  if (drawing) return;
  drawing = true;
  requestAnimationFrame(() => { drawing = false; drawRooms(); });
}

function drawRooms() {
  const items = [...rooms].sort((a, b) =>
    (a.kind === b.kind ? 0 : a.kind === "book" ? -1 : 1)
    || (a.book_id ?? 0) - (b.book_id ?? 0)
    || a.title.localeCompare(b.title));
  $("rooms").replaceChildren(...items.map((r) => {
    const link = document.createElement("a");
    link.href = "#" + encodeURIComponent(r.name);
    link.dataset.room = r.name;
    if (r.name === room) link.setAttribute("aria-current", "true");
    const title = document.createElement("span");
    title.className = "room-name";
    title.textContent = r.title;
    const meta = document.createElement("span");
    meta.className = "room-meta";
    if (r.live.count > 0) {
      const live = document.createElement("span");
      live.className = "live-count";
      live.textContent = `● ${r.live.count} live`;
      meta.append(live, " · ");
    }
    const when = document.createElement("span");
    when.textContent = r.last_message_at ? ago(r.last_message_at) : "no messages yet";
    meta.append(when);
    link.append(title, meta);
    const item = document.createElement("li");
    item.append(link);
    return item;
  }));
}

const CATALOGUE_NOTES = {
  stale: "Book titles may be out of date: the catalogue cannot be reached right now.",
  unavailable: "Book titles are unavailable: the catalogue cannot be reached right now. " +
               "Rooms with messages are listed.",
};

async function loadRooms() {
  const found = [];
  let offset = 0;
  let catalogue = null;
  for (let page = 0; page < MAX_ROOM_PAGES && offset !== null; page++) {
    let response;
    try { response = await fetch(`/rooms?limit=100&offset=${offset}`); }
    catch { return; }  // tried again on the next refresh
    if (!response.ok) {
      if (!rooms.length) $("catalogue-note").textContent = "The rooms could not be listed.";
      return;
    }
    const body = await response.json();
    found.push(...body.items);
    catalogue = catalogue || body.catalogue;
    offset = body.next_offset;
  }
  rooms = found;
  $("catalogue-note").textContent = CATALOGUE_NOTES[catalogue.status] || "";
  drawRooms();
}

// -- wiring -------------------------------------------------------------------------------------

window.addEventListener("hashchange", () => {
  const name = roomFromHash();
  if (name && name !== room) open(name);
});

$("choose").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = $("room").value.trim();
  $("room").value = "";
  if (name === room) return;
  if (ROOM_NAME.test(name) && roomFromHash() !== name) location.hash = name;  // opens it
  else open(name);  // shows why it cannot be opened
});

$("author").addEventListener("change", () => {
  localStorage.setItem("chat.author", $("author").value);
  if (room && stream) refollow();  // others see the new name
});

$("post").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!room) { $("error").textContent = "Open a room first."; return; }
  localStorage.setItem("chat.author", $("author").value);
  $("send").disabled = true;
  try {
    const response = await fetch(`/rooms/${encodeURIComponent(room)}/messages`, {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({author: $("author").value, text: $("text").value}),
    });
    if (!response.ok) { $("error").textContent = await problem(response); return; }
    $("error").textContent = "";
    render(await response.json());
    $("text").value = "";
    $("text").focus();
  } finally {
    $("send").disabled = false;
  }
});

$("text").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    $("post").requestSubmit();
  }
});

async function start() {
  $("author").value = localStorage.getItem("chat.author") || "";
  const listed = loadRooms();
  setInterval(() => { if (document.visibilityState === "visible") loadRooms(); }, ROOMS_REFRESH_MS);
  const initial = roomFromHash();
  if (initial) { open(initial); return; }
  history.replaceState(null, "", "#" + DEFAULT_ROOM);
  if (await open(DEFAULT_ROOM)) return;
  await listed;  // no book 1 in this shop: the first room listed instead
  const first = $("rooms").querySelector("a");
  if (first && !room && roomFromHash() === DEFAULT_ROOM) location.hash = first.dataset.room;
}

start();
