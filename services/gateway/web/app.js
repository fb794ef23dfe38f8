/* The bookshop's storefront (index.html), served by the gateway at /static/app.js.
 *
 * The page runs under `Content-Security-Policy: default-src 'self'`: no inline script or
 * style, no eval, nothing from another origin. Plain DOM, no build step. Text from the services
 * (titles, authors, messages, problem details) is only ever set with textContent.
 *
 * It talks to the gateway only: /api/books/..., /api/shop/..., /api/chat/... (the services'
 * own paths after the prefix), /config.json ({"jaeger_url": ...}) and the X-Trace-Id header
 * of every response. A part that is unavailable (a 502/503/504 problem naming an `upstream`,
 * a network error, or no answer within TIMEOUT_MS) shows its notice; the rest keeps working
 * and the next user action asks again. The chat stream reconnects by itself.
 *
 * Stable hooks for tests (#id, or [data-testid] where an element repeats):
 *   header      #search-form, #search (the search box), #search-field (all|title|author),
 *               #search-button, #nav-catalogue, #nav-orders
 *   notices     #notice-books, #notice-shop, #notice-chat: [data-testid=unavailable-notice]
 *               [data-upstream=books|shop|chat], visible (no `hidden`) while that part is
 *               unavailable; their button .notice-retry tries again
 *   catalogue   #catalogue-view, #catalogue-heading, #catalogue-status, #catalogue-empty,
 *               #book-list > li[data-testid=book-item][data-book-id] (each holds
 *               a.book-link, .book-card-title, .book-card-author, .book-card-price),
 *               #load-more
 *   book        #book-view, #book-detail, #book-title, #book-author, #book-price,
 *               #book-stock (data-stock = copies), #book-isbn, #book-note (e.g. details
 *               out of date), #back-to-catalogue
 *   ordering    #order-form, #quantity, #order-button, #order-total-preview, #order-error,
 *               #order-confirmation (data-order-id, data-status = the raw order status),
 *               #order-id, #order-status (data-status), #order-summary, #order-total,
 *               #trace-link (href `${jaeger_url}/trace/${X-Trace-Id of the POST}`)
 *   orders      #orders-view, #orders-status, #orders-refresh, #orders-empty, #orders-more,
 *               #orders-list > li[data-testid=order-item][data-order-id][data-status]
 *               holding [data-testid=order-status], [data-testid=cancel-order] (confirmed or
 *               cancelling orders), [data-testid=order-trace-link] (orders placed from this
 *               tab), [data-testid=order-error]
 *   chat        #chat-panel (data-state = idle|connecting|live|reconnecting|unavailable),
 *               #chat-room, #chat-state, #chat-messages > li[data-testid=chat-message]
 *               [data-id][data-author] (.chat-text holds the text; author "shop" = an order
 *               notice, class .chat-notice), #chat-empty, #chat-form, #chat-author,
 *               #chat-text, #chat-send, #chat-error
 */
"use strict";

const TIMEOUT_MS = 5000;          // a request slower than this counts as unavailable
const PAGE_SIZE = 24;             // books per catalogue page
const SEARCH_LIMIT = 50;          // per query in an "All" search (title and author merged)
const ORDERS_PAGE = 20;
const CHAT_HISTORY = 50;
const CHAT_CONNECT_MS = 10000;    // a stream not open by then is dropped and tried again
const CHAT_NOTICE_MS = 5000;      // a stream down this long shows the chat notice
const CHAT_RETRY_MS = [2000, 4000, 8000, 15000, 30000];
const PENDING_POLLS = 15;         // a pending order is read again every second this many times
const CURRENCY = "€";
const DEFAULT_JAEGER = "http://localhost:16686";
const TRACE_ID = /^[0-9a-f]{32}$/;
const PARTS = ["books", "shop", "chat"];
const STATUS_LABELS = {
  pending: "Pending",
  confirmed: "Confirmed",
  rejected: "Rejected",
  cancelling: "Cancelling",
  cancelled: "Cancelled",
};

const $ = (id) => document.getElementById(id);

// -- small helpers ------------------------------------------------------------------------------

// An element with properties and children; strings become text nodes (never HTML).
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = String(value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child !== null && child !== undefined && child !== false) node.append(child);
  }
  return node;
}

function money(amount) {
  const text = String(amount ?? "");
  return /^\d+(\.\d{1,2})?$/.test(text)
    ? `${CURRENCY}${Number(text).toFixed(2)}`
    : `${CURRENCY}${text}`;
}

function when(timestamp, options = {dateStyle: "medium", timeStyle: "short"}) {
  const date = new Date(timestamp);
  return Number.isNaN(date.getTime()) ? "" : date.toLocaleString([], options);
}

function uuid() {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  // crypto.randomUUID needs a secure context: elsewhere, the same from getRandomValues.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function shortId(id) {
  return String(id).slice(0, 8).toUpperCase();
}

function hashOf(text) {
  let hash = 0;
  for (const ch of String(text)) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return hash;
}

function plural(count, one, many) {
  return `${count} ${count === 1 ? one : many}`;
}

// -- talking to the gateway ---------------------------------------------------------------------

// The named part (books, shop, chat) did not answer: its notice is shown.
class Unavailable extends Error {
  constructor(part, reason, detail) {
    super(`${part} is unavailable (${reason})`);
    this.part = part;
    this.reason = reason;   // timeout | network | 502 | 503 | 504
    this.detail = detail || "";
  }
}

const config = {jaegerUrl: DEFAULT_JAEGER};

async function loadConfig() {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), TIMEOUT_MS);
  try {
    const response = await fetch("/config.json", {signal: controller.signal, cache: "no-store"});
    if (!response.ok) return;
    const body = await response.json();
    const url = new URL(String(body.jaeger_url));
    if (url.protocol === "http:" || url.protocol === "https:") {
      config.jaegerUrl = url.href.replace(/\/+$/, "");
    }
  } catch {
    // The default stands.
  } finally {
    clearTimeout(timer);
  }
}

function traceUrl(traceId) {
  return TRACE_ID.test(traceId || "") ? `${config.jaegerUrl}/trace/${traceId}` : null;
}

/* One request to a part through the gateway, given up after TIMEOUT_MS. Resolves to
 * {ok, status, data, problem, traceId} whenever the part answered (problem: the body of a
 * non-2xx answer); throws Unavailable when it did not. */
async function call(part, path, {method = "GET", headers = {}, body, timeout = TIMEOUT_MS} = {}) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeout);
  let response;
  let text;
  try {
    response = await fetch(`/api/${part}${path}`, {
      method,
      headers: {Accept: "application/json", ...headers},
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: controller.signal,
      cache: "no-store",
    });
    text = await response.text();
  } catch {
    const reason = controller.signal.aborted ? "timeout" : "network";
    showUnavailable(part, reason);
    throw new Unavailable(part, reason);
  } finally {
    clearTimeout(timer);
  }
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  const traceId = (response.headers.get("X-Trace-Id") || "").toLowerCase();
  const type = response.headers.get("Content-Type") || "";
  const isProblem = type.includes("problem+json") && data !== null && typeof data === "object";
  if ([502, 503, 504].includes(response.status)) {
    // The gateway's own answer names the upstream it could not use; a service's own 5xx
    // means that part cannot serve either. Except shop's answer about an order it recorded
    // but could not settle (books away): that order is shown, with its status.
    const upstream = isProblem && PARTS.includes(data.upstream) ? data.upstream : null;
    const aboutAnOrder = isProblem && !upstream && typeof data.order_id === "string";
    if (!aboutAnOrder) {
      // A service's own answer may name the dependency it could not use (shop: books).
      const dependency = isProblem && PARTS.includes(data.dependency) ? data.dependency : null;
      const who = upstream || dependency || part;
      if (who !== part) showAvailable(part);
      const detail = isProblem && typeof data.detail === "string" ? data.detail : "";
      showUnavailable(who, String(response.status), detail);
      throw new Unavailable(who, String(response.status), detail);
    }
  }
  showAvailable(part);
  return {
    ok: response.ok,
    status: response.status,
    data: response.ok ? data : null,
    problem: response.ok ? null : (data && typeof data === "object" ? data : {}),
    traceId,
  };
}

function problemText(result, fallback = "Something went wrong.") {
  const problem = result.problem || {};
  if (typeof problem.detail === "string" && problem.detail) return problem.detail;
  if (typeof problem.title === "string" && problem.title) return problem.title;
  return `${fallback} (HTTP ${result.status})`;
}

// -- unavailable notices ------------------------------------------------------------------------

const NOTICE_DETAIL = {
  timeout: "It did not answer in time.",
  network: "It cannot be reached.",
  502: "It cannot be reached.",
  503: "It is not taking requests for a moment.",
  504: "It did not answer in time.",
};
const NOTICE_HINT = {
  books: "Your next search or click tries again.",
  shop: "Browsing still works; your next click tries again.",
  chat: "The chat reconnects by itself.",
};

function showUnavailable(part, reason) {
  const notice = $(`notice-${part}`);
  if (!notice) return;
  notice.querySelector(".notice-detail").textContent =
    `${NOTICE_DETAIL[reason] || ""} ${NOTICE_HINT[part]}`.trim();
  notice.dataset.reason = reason;
  notice.hidden = false;
}

function showAvailable(part) {
  const notice = $(`notice-${part}`);
  if (notice && !notice.hidden) notice.hidden = true;
}

// -- routing ------------------------------------------------------------------------------------

let navigation = 0;  // the latest route(): answers for an earlier one are dropped

function parseRoute() {
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query = ""] = hash.split("?");
  const params = new URLSearchParams(query);
  const book = path.match(/^\/book\/([1-9]\d{0,9})$/);
  if (book && Number(book[1]) <= 2147483647) return {view: "book", id: Number(book[1])};
  if (path === "/orders") return {view: "orders"};
  const q = path === "/search" ? (params.get("q") || "").trim().slice(0, 200) : "";
  const field = ["title", "author"].includes(params.get("in")) ? params.get("in") : "all";
  return {view: "catalogue", q, field: q ? field : "all"};
}

function showView(name) {
  for (const view of ["catalogue", "book", "orders"]) $(`${view}-view`).hidden = view !== name;
  const current = name === "orders" ? "nav-orders" : name === "catalogue" ? "nav-catalogue" : null;
  for (const id of ["nav-catalogue", "nav-orders"]) {
    if (id === current) $(id).setAttribute("aria-current", "page");
    else $(id).removeAttribute("aria-current");
  }
}

let lastView = null;

function route() {
  const token = ++navigation;
  const where = parseRoute();
  const moved = lastView !== null && lastView !== where.view;
  lastView = where.view;
  showView(where.view);
  if (where.view !== "book") closeChat();
  if (where.view === "catalogue") {
    document.title = where.q ? `“${where.q}” · Lantern Books` : "Lantern Books";
    showCatalogue(where, token);
    if (moved) $("catalogue-heading").focus({preventScroll: true});
  } else if (where.view === "book") {
    showBook(where.id, token);
  } else {
    document.title = "Your orders · Lantern Books";
    showOrders(token);
    if (moved) $("orders-heading").focus({preventScroll: true});
  }
  if (moved) window.scrollTo(0, 0);
}

// -- the catalogue ------------------------------------------------------------------------------

const books = new Map();  // id -> the book as books last gave it
const catalogue = {query: null, items: [], nextOffset: null};

function queryKey(where) {
  return `${where.field}:${where.q}`;
}

async function fetchBooks(where, offset) {
  const page = (params) => call("books", `/books?${new URLSearchParams(params)}`);
  if (!where.q) return toPage(await page({limit: PAGE_SIZE, offset}));
  if (where.field !== "all") {
    const key = where.field === "title" ? "q" : "author";
    return toPage(await page({[key]: where.q, limit: PAGE_SIZE, offset}));
  }
  // All: the title and the author searches side by side, merged by id.
  const [byTitle, byAuthor] = await Promise.all([
    page({q: where.q, limit: SEARCH_LIMIT}),
    page({author: where.q, limit: SEARCH_LIMIT}),
  ]);
  for (const result of [byTitle, byAuthor]) if (!result.ok) return toPage(result);
  const merged = new Map();
  for (const book of [...byTitle.data.items, ...byAuthor.data.items]) merged.set(book.id, book);
  const items = [...merged.values()].sort((a, b) => a.id - b.id);
  const more = byTitle.data.next_offset != null || byAuthor.data.next_offset != null;
  return {ok: true, items, total: items.length, nextOffset: null, truncated: more};
}

function toPage(result) {
  if (!result.ok) return {ok: false, error: problemText(result, "The search could not be run.")};
  const body = result.data;
  return {
    ok: true,
    items: body.items,
    total: body.total,
    nextOffset: body.next_offset ?? null,
    truncated: false,
  };
}

async function showCatalogue(where, token) {
  const key = queryKey(where);
  $("search").value = where.q;
  $("search-field").value = where.field;
  $("catalogue-heading").textContent = where.q ? `Results for “${where.q}”` : "All books";
  $("clear-search").hidden = !where.q;
  $("book-list").setAttribute("aria-busy", "true");
  if (catalogue.query !== key) {
    catalogue.items = [];
    catalogue.nextOffset = null;
    $("book-list").replaceChildren();
    $("catalogue-status").textContent = "Loading…";
  }
  $("catalogue-empty").hidden = true;
  $("load-more").hidden = true;
  let page;
  try {
    page = await fetchBooks(where, 0);
  } catch (error) {
    if (!(error instanceof Unavailable)) throw error;
    page = null;
  }
  if (token !== navigation) return;
  $("book-list").removeAttribute("aria-busy");
  if (page === null || !page.ok) {
    if (catalogue.query === key && catalogue.items.length) {
      $("catalogue-status").textContent = "Showing the books as they were last loaded.";
      $("load-more").hidden = catalogue.nextOffset === null;
      return;
    }
    catalogue.query = null;
    $("book-list").replaceChildren();
    $("catalogue-status").textContent = "";
    showEmpty("catalogue-empty", page === null
      ? ["We can't show the books right now.",
         "The catalogue is taking a short break. Please try again in a moment."]
      : ["That search didn't work.", page.error]);
    return;
  }
  catalogue.query = key;
  catalogue.items = page.items;
  catalogue.nextOffset = page.nextOffset;
  drawBooks(where, page);
}

async function loadMoreBooks() {
  const where = parseRoute();
  if (where.view !== "catalogue" || catalogue.nextOffset === null) return;
  const token = navigation;
  const button = $("load-more");
  button.disabled = true;
  button.textContent = "Loading…";
  let page = null;
  try {
    page = await fetchBooks(where, catalogue.nextOffset);
  } catch (error) {
    if (!(error instanceof Unavailable)) throw error;
  } finally {
    button.disabled = false;
    button.textContent = "Show more books";
  }
  if (token !== navigation || page === null || !page.ok) return;
  const known = new Set(catalogue.items.map((b) => b.id));
  catalogue.items.push(...page.items.filter((b) => !known.has(b.id)));
  catalogue.nextOffset = page.nextOffset;
  drawBooks(where, page);
}

function showEmpty(id, [title, text]) {
  const box = $(id);
  box.replaceChildren(el("p", {class: "empty-title", text: title}), el("p", {text}));
  box.hidden = false;
}

function drawBooks(where, page) {
  for (const book of catalogue.items) books.set(book.id, book);
  $("book-list").replaceChildren(...catalogue.items.map(bookCard));
  const count = catalogue.items.length;
  let status;
  if (!where.q) status = plural(page.total, "book", "books") + " on our shelves";
  else if (count === 0) status = "";
  else status = `${plural(page.truncated ? count : page.total ?? count, "book", "books")} found`
    + (page.truncated ? ", the first ones shown: add a word to narrow it down" : "");
  $("catalogue-status").textContent = status;
  if (where.q && count === 0) {
    const other = where.field === "title" ? " Try searching by author."
      : where.field === "author" ? " Try searching by title." : "";
    showEmpty("catalogue-empty", [`No books match “${where.q}”.`,
      `Check the spelling or try fewer words.${other}`]);
  } else {
    $("catalogue-empty").hidden = true;
  }
  $("load-more").hidden = catalogue.nextOffset === null;
}

function coverClass(book) {
  return `cover cover-${book.id % 8}`;
}

function stockLabel(stock) {
  if (typeof stock !== "number") return {text: "", cls: ""};
  if (stock <= 0) return {text: "Out of stock", cls: "stock-out"};
  if (stock <= 5) return {text: `Only ${stock} left`, cls: "stock-low"};
  return {text: "In stock", cls: "stock-in"};
}

function bookCard(book) {
  const stock = stockLabel(book.stock);
  return el("li", {class: "book-card", "data-testid": "book-item", "data-book-id": book.id},
    el("a", {class: "book-link", href: `#/book/${book.id}`},
      el("span", {class: coverClass(book), "aria-hidden": "true"},
        el("span", {class: "cover-title", text: book.title}),
        el("span", {class: "cover-author", text: book.author})),
      el("span", {class: "book-card-title", text: book.title}),
      el("span", {class: "book-card-author", text: book.author}),
      el("span", {class: "book-card-foot"},
        el("span", {class: "book-card-price", text: money(book.price)}),
        el("span", {class: `stock-tag ${stock.cls}`, text: stock.text}))));
}

// -- one book -----------------------------------------------------------------------------------

let current = {id: null, book: null};

function resetOrder() {
  $("order-error").textContent = "";
  $("order-confirmation").hidden = true;
  $("quantity").value = "1";
  $("order-total-preview").textContent = "";
  retry = null;
}

async function showBook(id, token) {
  if (current.id !== id) resetOrder();
  current = {id, book: books.get(id) || null};
  followRoom(`book-${id}`);
  if (current.book) drawBook(current.book);
  else drawBookPlaceholder(id, "Loading…");
  $("book-title").focus({preventScroll: true});
  window.scrollTo(0, 0);
  await refreshBook(id, token);
}

async function refreshBook(id, token = navigation) {
  let result;
  try {
    result = await call("books", `/books/${id}`);
  } catch (error) {
    if (!(error instanceof Unavailable)) throw error;
    if (token !== navigation || current.id !== id) return;
    if (current.book) {
      $("book-note").textContent = "Stock and price may be out of date: the catalogue did not answer.";
    } else {
      drawBookPlaceholder(id, "This book's details can't be shown right now. The chat is still open.");
    }
    return;
  }
  if (token !== navigation || current.id !== id) return;
  if (result.ok) {
    books.set(id, result.data);
    current.book = result.data;
    drawBook(result.data);
  } else if (result.status === 404) {
    current.book = null;
    drawBookPlaceholder(id, "We don't have this book in our catalogue.");
  } else {
    drawBookPlaceholder(id, problemText(result, "This book can't be shown."));
  }
}

function drawBook(book) {
  document.title = `${book.title} · Lantern Books`;
  $("book-detail").dataset.bookId = book.id;
  $("book-cover").className = `${coverClass(book)} cover-large`;
  $("book-cover").querySelector(".cover-title").textContent = book.title;
  $("book-cover").querySelector(".cover-author").textContent = book.author;
  $("book-title").textContent = book.title;
  $("book-author").textContent = book.author;
  $("book-byline").hidden = false;
  $("book-price").textContent = money(book.price);
  const stock = stockLabel(book.stock);
  $("book-stock").textContent = typeof book.stock === "number"
    ? (book.stock > 0 ? `${stock.text} · ${plural(book.stock, "copy", "copies")} available`
      : "Out of stock")
    : "";
  $("book-stock").className = `stock ${stock.cls}`;
  $("book-stock").dataset.stock = String(book.stock ?? "");
  $("book-isbn").textContent = book.isbn || "";
  $("book-facts").hidden = !book.isbn;
  $("book-note").textContent = "";
  const max = typeof book.stock === "number" ? Math.max(1, Math.min(100, book.stock)) : 100;
  $("quantity").max = String(max);
  const soldOut = typeof book.stock === "number" && book.stock <= 0;
  $("order-button").disabled = soldOut;
  $("quantity").disabled = soldOut;
  $("order-button").textContent = soldOut ? "Out of stock" : "Order now";
  updatePreview();
}

function cents(price) {
  const match = /^(\d+)(?:\.(\d{1,2}))?$/.exec(String(price ?? ""));
  return match ? Number(match[1]) * 100 + Number((match[2] || "0").padEnd(2, "0")) : null;
}

function updatePreview() {
  const book = current.book;
  const quantity = Number($("quantity").value);
  const unit = book ? cents(book.price) : null;
  const valid = unit !== null && Number.isInteger(quantity) && quantity >= 1 && quantity <= 100;
  $("order-total-preview").textContent = valid && !$("order-button").disabled
    ? `Total ${money(((unit * quantity) / 100).toFixed(2))}` : "";
}

function drawBookPlaceholder(id, note) {
  $("book-detail").dataset.bookId = id;
  $("book-cover").className = `cover cover-${id % 8} cover-large`;
  $("book-cover").querySelector(".cover-title").textContent = "";
  $("book-cover").querySelector(".cover-author").textContent = "";
  $("book-title").textContent = `Book #${id}`;
  $("book-byline").hidden = true;
  $("book-price").textContent = "";
  $("book-stock").textContent = "";
  $("book-stock").dataset.stock = "";
  $("book-facts").hidden = true;
  $("book-note").textContent = note;
  $("order-button").disabled = true;
  $("quantity").disabled = true;
  $("order-button").textContent = "Order now";
  updatePreview();
}

// -- ordering -----------------------------------------------------------------------------------

// The key of an order whose fate is unknown (no answer, a timeout, a gateway error): the next
// click for the same book and quantity sends it again, so the shop never places it twice.
// Every other click gets a fresh key.
let retry = null;
const traces = loadTraces();   // order id -> the X-Trace-Id of the POST that placed it

function loadTraces() {
  try { return new Map(JSON.parse(sessionStorage.getItem("storefront.traces") || "[]")); }
  catch { return new Map(); }
}

function rememberTrace(orderId, traceId) {
  if (!orderId || !TRACE_ID.test(traceId || "")) return;
  traces.set(String(orderId), traceId);
  try { sessionStorage.setItem("storefront.traces", JSON.stringify([...traces].slice(-50))); }
  catch { /* private mode: the link just is not kept */ }
}

async function placeOrder(event) {
  event.preventDefault();
  const book = current.book;
  if (!book) return;
  const quantity = Number($("quantity").value);
  const max = Math.min(100, typeof book.stock === "number" ? book.stock : 100);
  if (!Number.isInteger(quantity) || quantity < 1 || quantity > 100) {
    $("order-error").textContent = "Choose a quantity between 1 and 100.";
    $("quantity").focus();
    return;
  }
  if (quantity > max) {
    $("order-error").textContent = `Only ${plural(max, "copy is", "copies are")} available.`;
    $("quantity").focus();
    return;
  }
  const key = retry && retry.bookId === book.id && retry.quantity === quantity ? retry.key : uuid();
  retry = null;
  const button = $("order-button");
  button.disabled = true;
  button.textContent = "Placing your order…";
  $("order-error").textContent = "";
  $("order-confirmation").hidden = true;
  try {
    const result = await call("shop", "/orders", {
      method: "POST",
      headers: {"Content-Type": "application/json", "Idempotency-Key": key},
      body: {items: [{book_id: book.id, quantity}]},
    });
    if (result.ok) {
      rememberTrace(result.data.id, result.traceId);
      showConfirmation(result.data, result.traceId, book);
      refreshBook(book.id);
    } else if (result.problem && typeof result.problem.order_id === "string") {
      // Recorded but not confirmed (out of stock, or books away while settling it).
      const order = {
        id: result.problem.order_id,
        status: result.problem.order_status || (result.status === 409 ? "rejected" : "pending"),
        items: [{book_id: book.id, quantity, unit_price: book.price}],
        total: null,
        reason: result.problem.detail || result.problem.title,
      };
      rememberTrace(order.id, result.traceId);
      showConfirmation(order, result.traceId, book);
      refreshBook(book.id);
    } else {
      $("order-error").textContent = `Your order was not placed: ${problemText(result)}`;
    }
  } catch (error) {
    if (!(error instanceof Unavailable)) throw error;
    retry = {key, bookId: book.id, quantity};
    if (["timeout", "network", "504"].includes(error.reason)) {
      $("order-error").textContent = "We could not confirm your order in time. It may still go "
        + "through: check Your orders, or press Order now again (it will not be placed twice).";
    } else if (error.part === "books") {
      $("order-error").textContent = "The catalogue can't set copies aside right now (books), so "
        + "your order was not placed. Please try again in a moment.";
    } else {
      $("order-error").textContent = "Ordering is unavailable right now (shop). Your order was "
        + "not placed; please try again in a moment.";
    }
  } finally {
    const soldOut = current.book && current.book.stock <= 0;
    button.disabled = Boolean(soldOut);
    button.textContent = soldOut ? "Out of stock" : "Order now";
  }
}

function humanReason(reason) {
  const text = String(reason || "");
  if (text.startsWith("out_of_stock")) {
    return "There aren't enough copies in stock for this order. Try a smaller quantity.";
  }
  if (text.startsWith("books_unavailable")) {
    return "The catalogue could not set the copies aside just now. Please try again in a moment.";
  }
  return text;
}

const CONFIRMATION_HEADINGS = {
  confirmed: "Thank you! Your order is confirmed.",
  pending: "We are confirming your order…",
  rejected: "Your order could not be placed.",
  cancelling: "Your order is being cancelled.",
  cancelled: "Your order was cancelled.",
};

function statusBadge(node, status) {
  node.textContent = STATUS_LABELS[status] || String(status);
  node.className = `status status-${STATUS_LABELS[status] ? status : "unknown"}`;
  node.dataset.status = status;
}

function itemsText(items, fallbackBook) {
  return (items || []).map((item) => {
    const book = books.get(item.book_id) || (fallbackBook && fallbackBook.id === item.book_id
      ? fallbackBook : null);
    return `${item.quantity} × ${book ? book.title : `Book #${item.book_id}`}`;
  }).join(", ");
}

function showConfirmation(order, traceId, book) {
  const box = $("order-confirmation");
  box.dataset.orderId = order.id;
  box.dataset.status = order.status;
  box.classList.toggle("confirmation-bad", order.status === "rejected");
  box.classList.toggle("confirmation-wait", ["pending", "cancelling"].includes(order.status));
  $("confirmation-heading").textContent = CONFIRMATION_HEADINGS[order.status] || "Your order";
  $("order-id").textContent = shortId(order.id);
  $("order-id").title = order.id;
  statusBadge($("order-status"), order.status);
  $("order-summary").textContent = itemsText(order.items, book);
  $("order-total").textContent = order.total != null ? money(order.total) : "—";
  $("order-total").previousElementSibling.hidden = order.total == null;
  $("order-total").hidden = order.total == null;
  const reason = order.status === "rejected" || order.reason ? humanReason(order.reason) : "";
  $("order-reason").textContent = reason;
  $("order-reason").hidden = !reason;
  const link = $("trace-link");
  const url = traceUrl(traceId);
  if (url) link.href = url;
  else link.removeAttribute("href");
  link.hidden = !url;
  box.hidden = false;
  box.focus({preventScroll: true});
  box.scrollIntoView({block: "nearest", behavior: "smooth"});
  if (order.status === "pending") followPending(order.id, book);
}

async function followPending(orderId, book) {
  for (let poll = 0; poll < PENDING_POLLS; poll++) {
    await new Promise((resolve) => setTimeout(resolve, 1000));
    if ($("order-confirmation").dataset.orderId !== orderId || $("order-confirmation").hidden) return;
    let result;
    try { result = await call("shop", `/orders/${encodeURIComponent(orderId)}`); }
    catch { continue; }
    if (!result.ok) continue;
    if (result.data.status !== "pending") {
      const box = $("order-confirmation");
      box.dataset.status = result.data.status;
      box.classList.toggle("confirmation-bad", result.data.status === "rejected");
      box.classList.toggle("confirmation-wait", result.data.status === "cancelling");
      $("confirmation-heading").textContent = CONFIRMATION_HEADINGS[result.data.status] || "Your order";
      statusBadge($("order-status"), result.data.status);
      $("order-total").textContent = money(result.data.total);
      const reason = result.data.reason ? humanReason(result.data.reason) : "";
      $("order-reason").textContent = reason;
      $("order-reason").hidden = !reason;
      if (book) refreshBook(book.id);
      return;
    }
  }
}

// -- the orders ---------------------------------------------------------------------------------

const orders = {items: [], nextOffset: null};

async function showOrders(token, offset = 0) {
  const more = offset > 0;
  if (!more) {
    $("orders-list").setAttribute("aria-busy", "true");
    if (!orders.items.length) $("orders-status").textContent = "Loading your orders…";
  }
  $("orders-refresh").disabled = true;
  $("orders-more").disabled = true;
  let result = null;
  try {
    result = await call("shop", `/orders?${new URLSearchParams({limit: ORDERS_PAGE, offset})}`);
  } catch (error) {
    if (!(error instanceof Unavailable)) throw error;
  } finally {
    $("orders-refresh").disabled = false;
    $("orders-more").disabled = false;
  }
  if (token !== navigation) return;
  $("orders-list").removeAttribute("aria-busy");
  if (result === null || !result.ok) {
    if (orders.items.length) {
      $("orders-status").textContent = result === null
        ? "Showing your orders as they were last loaded."
        : problemText(result, "Your orders could not be loaded.");
      return;
    }
    $("orders-list").replaceChildren();
    $("orders-status").textContent = "";
    $("orders-more").hidden = true;
    showEmpty("orders-empty", result === null
      ? ["We can't show your orders right now.", "Please try again in a moment."]
      : ["Your orders could not be loaded.", problemText(result)]);
    return;
  }
  const page = result.data;
  orders.items = more ? [...orders.items, ...page.items] : page.items;
  orders.nextOffset = page.next_offset ?? null;
  $("orders-list").replaceChildren(...orders.items.map(orderRow));
  $("orders-status").textContent = page.total
    ? `${plural(page.total, "order", "orders")}, newest first` : "";
  if (!orders.items.length) {
    showEmpty("orders-empty", ["You haven't ordered anything yet.",
      "Find a book you like and press Order now: it will show up here."]);
  } else {
    $("orders-empty").hidden = true;
  }
  $("orders-more").hidden = orders.nextOffset === null;
  resolveTitles(orders.items);
}

function orderRow(order) {
  const cancellable = ["confirmed", "cancelling"].includes(order.status);
  const url = traceUrl(traces.get(String(order.id)));
  const status = el("span", {"data-testid": "order-status"});
  statusBadge(status, order.status);
  const items = el("ul", {class: "order-items"}, ...(order.items || []).map((item) =>
    el("li", {},
      el("span", {class: "order-qty", text: `${item.quantity} ×`}), " ",
      el("span", {
        class: "order-title",
        "data-title-for": item.book_id,
        text: books.has(item.book_id) ? books.get(item.book_id).title : `Book #${item.book_id}`,
      }),
      el("span", {class: "order-unit", text: ` at ${money(item.unit_price)}`}))));
  const reason = order.reason && order.status !== "confirmed" ? humanReason(order.reason) : "";
  const row = el("li", {
    class: "order-card",
    "data-testid": "order-item",
    "data-order-id": order.id,
    "data-status": order.status,
  },
  el("div", {class: "order-main"},
    el("p", {class: "order-head"},
      el("span", {class: "order-number", title: order.id, text: `Order ${shortId(order.id)}`}),
      el("span", {class: "order-date"},
        el("time", {datetime: order.created_at, text: when(order.created_at)}))),
    items,
    reason ? el("p", {class: "order-reason", text: reason}) : null),
  el("div", {class: "order-side"},
    status,
    el("span", {class: "order-total", text: money(order.total)}),
    el("span", {class: "order-actions"},
      url ? el("a", {
        class: "text-link",
        href: url,
        target: "_blank",
        rel: "noopener noreferrer",
        "data-testid": "order-trace-link",
        text: "View trace",
      }) : null,
      cancellable ? el("button", {
        type: "button",
        class: "button button-quiet",
        "data-testid": "cancel-order",
        "data-order-id": order.id,
        "aria-label": `Cancel order ${shortId(order.id)}`,
        text: order.status === "cancelling" ? "Finish cancelling" : "Cancel order",
      }) : null)),
  el("p", {class: "form-error order-error", role: "alert", "data-testid": "order-error"}));
  return row;
}

async function resolveTitles(list) {
  const missing = [...new Set(list.flatMap((o) => (o.items || []).map((i) => i.book_id)))]
    .filter((id) => !books.has(id))
    .slice(0, 20);
  await Promise.all(missing.map(async (id) => {
    try {
      const result = await call("books", `/books/${id}`);
      if (result.ok) books.set(id, result.data);
    } catch { /* the order still shows the book's number */ }
  }));
  for (const node of $("orders-list").querySelectorAll("[data-title-for]")) {
    const book = books.get(Number(node.dataset.titleFor));
    if (book) node.textContent = book.title;
  }
}

async function cancelOrder(button) {
  const orderId = button.dataset.orderId;
  const row = button.closest("li.order-card");
  const error = row.querySelector(".order-error");
  button.disabled = true;
  button.textContent = "Cancelling…";
  error.textContent = "";
  let result = null;
  try {
    result = await call("shop", `/orders/${encodeURIComponent(orderId)}/cancel`, {method: "POST"});
  } catch (failure) {
    if (!(failure instanceof Unavailable)) throw failure;
    error.textContent = "The order could not be cancelled right now (shop). Please try again.";
  }
  if (result && result.ok) {
    const index = orders.items.findIndex((o) => o.id === orderId);
    if (index >= 0) orders.items[index] = result.data;
    const fresh = orderRow(result.data);
    row.replaceWith(fresh);
    const focusable = fresh.querySelector("button") || fresh.querySelector("[data-testid=order-status]");
    if (focusable.tagName === "BUTTON") focusable.focus();
    const confirmation = $("order-confirmation");
    if (confirmation.dataset.orderId === orderId) {
      confirmation.dataset.status = result.data.status;
      statusBadge($("order-status"), result.data.status);
    }
    return;
  }
  if (result) error.textContent = `The order could not be cancelled: ${problemText(result)}`;
  if (button.isConnected) {
    button.disabled = false;
    button.textContent = "Cancel order";
  }
}

// -- the book's chat room -----------------------------------------------------------------------

const chat = {
  room: null,
  source: null,
  attempt: 0,        // consecutive failed connections (the retry delay grows with it)
  retryTimer: 0,
  connectTimer: 0,
  noticeTimer: 0,
  generation: 0,     // bumped at every (re)follow: late callbacks of older streams do nothing
  shown: new Set(),
};

function setChatState(state, text) {
  $("chat-panel").dataset.state = state;
  $("chat-state").dataset.state = state;
  $("chat-state-text").textContent = text;
}

function closeChat() {
  chat.generation++;
  if (chat.source) chat.source.close();
  chat.source = null;
  clearTimeout(chat.retryTimer);
  clearTimeout(chat.connectTimer);
  clearTimeout(chat.noticeTimer);
  chat.noticeTimer = 0;
  if (chat.room) setChatState("idle", "Not connected");
  chat.room = null;
  showAvailable("chat");
}

function followRoom(room) {
  if (chat.room === room && chat.source) return;  // already following it
  closeChat();
  chat.room = room;
  chat.attempt = 0;
  chat.shown.clear();
  $("chat-room").textContent = room;
  $("chat-messages").replaceChildren();
  $("chat-empty").hidden = true;
  $("chat-error").textContent = "";
  $("chat-author").value = localStorage.getItem("storefront.name") || "";
  connect();
  loadHistory();
}

function connect() {
  const generation = ++chat.generation;
  const room = chat.room;
  clearTimeout(chat.retryTimer);
  clearTimeout(chat.connectTimer);
  if (chat.source) chat.source.close();
  setChatState(chat.attempt ? "reconnecting" : "connecting",
    chat.attempt ? "Reconnecting…" : "Connecting…");
  const source = new EventSource(`/api/chat/rooms/${encodeURIComponent(room)}/events`);
  chat.source = source;
  let opened = false;
  // A stream that never opens (a hanging proxy) is dropped and tried again.
  chat.connectTimer = setTimeout(() => {
    if (generation === chat.generation && !opened) retryLater(generation, "timeout");
  }, CHAT_CONNECT_MS);
  source.addEventListener("open", () => {
    if (generation !== chat.generation) return;
    const wasDown = chat.attempt > 0 || !$("notice-chat").hidden;
    opened = true;
    chat.attempt = 0;
    clearTimeout(chat.connectTimer);
    clearTimeout(chat.noticeTimer);
    chat.noticeTimer = 0;
    setChatState("live", "Live");
    showAvailable("chat");
    if (wasDown) loadHistory();  // what was said while this page was not listening
  });
  source.addEventListener("message", (event) => {
    if (generation !== chat.generation) return;
    try { drawMessage(JSON.parse(event.data)); } catch { /* not a message */ }
  });
  source.addEventListener("error", () => {
    if (generation !== chat.generation) return;
    opened = false;
    if (!chat.noticeTimer) {
      chat.noticeTimer = setTimeout(() => {
        chat.noticeTimer = 0;
        if (generation === chat.generation && chat.room && $("chat-panel").dataset.state !== "live") {
          showUnavailable("chat", "network");
        }
      }, CHAT_NOTICE_MS);
    }
    if (source.readyState === EventSource.CLOSED) {
      // Refused (e.g. the gateway's 503 while chat is away): the browser gives up, so retry.
      retryLater(generation, "refused");
    } else {
      // The browser reconnects by itself, with Last-Event-ID.
      setChatState("reconnecting", "Reconnecting…");
    }
  });
}

function retryLater(generation, why) {
  if (generation !== chat.generation) return;
  if (chat.source) chat.source.close();
  chat.source = null;
  clearTimeout(chat.connectTimer);
  const delay = CHAT_RETRY_MS[Math.min(chat.attempt, CHAT_RETRY_MS.length - 1)];
  chat.attempt++;
  if (why === "refused" || chat.attempt > 1) showUnavailable("chat", "503");
  setChatState("unavailable", "Offline, retrying…");
  const room = chat.room;
  chat.retryTimer = setTimeout(() => {
    if (generation === chat.generation && chat.room === room) connect();
  }, delay);
}

function retryChatNow() {
  if (!chat.room) return;
  chat.attempt = Math.max(chat.attempt, 1);
  connect();
  loadHistory();
}

async function loadHistory() {
  const room = chat.room;
  const generation = chat.generation;
  let result;
  try {
    result = await call("chat", `/rooms/${encodeURIComponent(room)}/messages?limit=${CHAT_HISTORY}`);
  } catch {
    if (chat.room === room) updateChatEmpty(CHAT_OFFLINE_TEXT);
    return;
  }
  if (chat.room !== room) return;
  if (!result.ok) {
    if (generation === chat.generation || chat.room === room) {
      $("chat-error").textContent = `The messages could not be loaded: ${problemText(result)}`;
    }
    return;
  }
  for (const message of [...result.data.items].reverse()) drawMessage(message);
  updateChatEmpty();
}

const CHAT_EMPTY_TEXT = "No messages yet. Say hello, or order a copy and the shop will post it here.";
const CHAT_OFFLINE_TEXT = "The conversation can't be loaded right now. It will appear here as soon "
  + "as the chat is back.";

function updateChatEmpty(text = CHAT_EMPTY_TEXT) {
  const empty = $("chat-messages").children.length === 0;
  if (empty) $("chat-empty").textContent = text;
  $("chat-empty").hidden = !empty;
}

function drawMessage(message) {
  if (!message || typeof message.id !== "number" || message.room !== chat.room) return;
  if (chat.shown.has(message.id)) return;
  chat.shown.add(message.id);
  const list = $("chat-messages");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  const author = String(message.author || "");
  const isShop = author === "shop";
  const time = el("time", {
    datetime: message.created_at,
    title: when(message.created_at),
    text: when(message.created_at, {hour: "2-digit", minute: "2-digit"}),
  });
  const meta = el("div", {class: "chat-meta"},
    el("span", {class: "chat-author", text: isShop ? "Lantern Books" : author}),
    isShop ? el("span", {class: "chat-badge", text: "order"}) : null,
    message.verified === false
      ? el("span", {class: "chat-badge chat-badge-muted", text: "unverified",
        title: "The catalogue could not confirm this book when the message was posted"})
      : null,
    time);
  const avatar = el("span", {
    class: isShop ? "chat-avatar chat-avatar-shop" : `chat-avatar avatar-${hashOf(author) % 8}`,
    "aria-hidden": "true",
    text: isShop ? "" : ([...author.trim()][0] || "?").toUpperCase(),
  });
  if (isShop) avatar.append(bagIcon());
  const item = el("li", {
    class: isShop ? "chat-message chat-notice" : "chat-message",
    "data-testid": "chat-message",
    "data-id": message.id,
    "data-author": author,
  }, avatar, el("div", {class: "chat-body"}, meta, el("p", {class: "chat-text", text: message.text})));
  // Keep id order when the history and the live stream interleave.
  const later = [...list.children].find((li) => Number(li.dataset.id) > message.id);
  list.insertBefore(item, later || null);
  if (atBottom || !later) list.scrollTop = list.scrollHeight;
  updateChatEmpty();
}

function bagIcon() {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", "M6 8h12l-1 12H7zM9 8V6a3 3 0 0 1 6 0v2");
  path.setAttribute("fill", "none");
  path.setAttribute("stroke", "currentColor");
  path.setAttribute("stroke-width", "2");
  path.setAttribute("stroke-linejoin", "round");
  svg.append(path);
  return svg;
}

async function postMessage(event) {
  event.preventDefault();
  const room = chat.room;
  const author = $("chat-author").value.trim();
  const text = $("chat-text").value.trim();
  if (!room) return;
  if (!author) { $("chat-error").textContent = "Please enter your name."; $("chat-author").focus(); return; }
  if (!text) { $("chat-error").textContent = "Please write a message."; $("chat-text").focus(); return; }
  try { localStorage.setItem("storefront.name", author); } catch { /* not kept */ }
  $("chat-send").disabled = true;
  $("chat-error").textContent = "";
  try {
    const result = await call("chat", `/rooms/${encodeURIComponent(room)}/messages`, {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: {author, text},
    });
    if (!result.ok) {
      $("chat-error").textContent = `Not sent: ${problemText(result)}`;
      return;
    }
    if (chat.room === room) drawMessage(result.data);
    $("chat-text").value = "";
    $("chat-text").focus();
  } catch (error) {
    if (!(error instanceof Unavailable)) throw error;
    $("chat-error").textContent = "Not sent: the chat is unavailable right now (chat). Please try again.";
  } finally {
    $("chat-send").disabled = false;
  }
}

// -- wiring -------------------------------------------------------------------------------------

function search(event) {
  event.preventDefault();
  const q = $("search").value.trim();
  const field = $("search-field").value;
  const target = q ? `#/search?${new URLSearchParams({q, in: field})}` : "#/";
  if (location.hash === target || (!q && ["", "#", "#/"].includes(location.hash))) route();
  else location.hash = target;
}

function retryPart(part) {
  const where = parseRoute();
  if (part === "chat" && where.view === "book") retryChatNow();
  else route();
}

function start() {
  window.addEventListener("hashchange", route);
  $("search-form").addEventListener("submit", search);
  $("search-field").addEventListener("change", () => {
    if ($("search").value.trim()) $("search-form").requestSubmit();
  });
  $("load-more").addEventListener("click", loadMoreBooks);
  $("order-form").addEventListener("submit", placeOrder);
  $("quantity").addEventListener("input", updatePreview);
  $("orders-refresh").addEventListener("click", () => {
    orders.nextOffset = null;
    showOrders(++navigation);
  });
  $("orders-more").addEventListener("click", () => {
    if (orders.nextOffset !== null) showOrders(navigation, orders.nextOffset);
  });
  $("orders-list").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-testid=cancel-order]");
    if (button) cancelOrder(button);
  });
  $("chat-form").addEventListener("submit", postMessage);
  for (const button of document.querySelectorAll(".notice-retry")) {
    button.addEventListener("click", () => retryPart(button.dataset.retry));
  }
  // A link to the view already shown (e.g. Books while on the catalogue) loads it again.
  for (const id of ["nav-catalogue", "nav-orders", "brand", "clear-search"]) {
    $(id).addEventListener("click", (event) => {
      const target = new URL($(id).href).hash;
      if (target === location.hash || (target === "#/" && ["", "#"].includes(location.hash))) {
        event.preventDefault();
        route();
      }
    });
  }
  loadConfig();
  route();
}

start();
