// mqueue web console: plain JS over the native JSON API (/api). Message data
// only ever reaches the page through textContent (el() below), never as HTML.
"use strict";

const POLL_MS = 2000;
const TOKEN_KEY = "mqueue.token";
const PREVIEW_CHARS = 200;

const main = document.getElementById("main");
const statusEl = document.getElementById("status");
let pollTimer = null;
let view = null; // the render function of the current page
const prev = new Map(); // queue name → {t, enq, deq} of the previous poll
let tokenWait = null; // a pending token prompt, shared by every 401

// el builds an element; string children become text nodes.
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "on") for (const [ev, fn] of Object.entries(v)) e.addEventListener(ev, fn);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

// The status line shows the last failed poll, else the last failed action.
let pollError = "";
let actionError = "";
function showStatus() { statusEl.textContent = pollError || actionError; }
function setStatus(text) { actionError = text || ""; showStatus(); }

// askToken shows the token form once and resolves when a token is entered.
function askToken(why) {
  if (tokenWait) return tokenWait;
  const form = document.getElementById("token-form");
  const input = document.getElementById("token-input");
  document.getElementById("token-why").textContent = why;
  form.hidden = false;
  input.value = "";
  input.focus();
  tokenWait = new Promise((resolve) => {
    form.onsubmit = (ev) => {
      ev.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, input.value.trim());
      form.hidden = true;
      tokenWait = null;
      resolve();
    };
  });
  return tokenWait;
}

// api calls /api with the stored token; on 401 it asks for the token and
// tries again. It resolves to {status, body} or throws Error(code: message).
async function api(method, path, body) {
  for (;;) {
    const headers = {};
    const tok = sessionStorage.getItem(TOKEN_KEY);
    if (tok) headers["Authorization"] = "Bearer " + tok;
    if (body !== undefined) headers["Content-Type"] = "application/octet-stream";
    const res = await fetch("/api" + path, { method, headers, body, cache: "no-store" });
    if (res.status === 401) {
      await askToken(tok ? "The token was refused; enter the server's auth token." :
        "This server needs its auth token (kept in this tab only, in sessionStorage).");
      continue;
    }
    const text = await res.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
    if (!res.ok && res.status !== 404) {
      throw new Error(data && data.error ? data.error + ": " + data.message : "HTTP " + res.status);
    }
    return { status: res.status, body: data };
  }
}

const q = (name) => "/queue/" + encodeURIComponent(name);

function fmtTime(ms) { return ms ? new Date(ms).toLocaleString() : ""; }
function fmtRate(r) { return r === null ? "–" : r.toFixed(1) + "/s"; }

function preview(m) {
  let s = m.body !== undefined ? m.body : "base64: " + m.body_base64;
  return s.length > PREVIEW_CHARS ? s.slice(0, PREVIEW_CHARS) + "…" : s;
}

// rates turns the totals of one poll into per-second rates since the last.
function rates(stats, now) {
  const out = new Map();
  for (const s of stats) {
    const p = prev.get(s.queue);
    const dt = p ? (now - p.t) / 1000 : 0;
    out.set(s.queue, dt > 0 ? {
      enq: Math.max(0, s.enqueued_total - p.enq) / dt,
      deq: Math.max(0, s.dequeued_total - p.deq) / dt,
    } : { enq: null, deq: null });
    prev.set(s.queue, { t: now, enq: s.enqueued_total, deq: s.dequeued_total });
  }
  return out;
}

async function confirmAndDo(question, fn) {
  if (!window.confirm(question)) return;
  try { await fn(); setStatus(""); } catch (e) { setStatus(e.message); }
  refresh();
}

function sendForm(fixedQueue) {
  const name = el("input", { id: "send-queue", placeholder: "queue", size: "16", required: "" });
  const body = el("textarea", { id: "send-body", placeholder: "message", required: "" });
  const out = el("span", { class: "msg", id: "send-result" });
  const form = el("form", { class: "inline", id: "send-form" },
    fixedQueue ? "" : name, body, el("button", { type: "submit", id: "send" }, "Send test message"), out);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const queue = fixedQueue || name.value.trim();
    if (!queue || body.value === "") return;
    confirmAndDo("Send this message to " + queue + "?", async () => {
      const r = await api("POST", q(queue), body.value);
      out.textContent = r.body && r.body.id ? "sent id " + r.body.id + " to " + queue : "";
      body.value = "";
    });
  });
  return form;
}

// The queue list.
function listPage() {
  const tbody = el("tbody", { id: "queues" });
  main.replaceChildren(
    el("h1", {}, "Queues"),
    el("table", {}, el("thead", {}, el("tr", {},
      el("th", {}, "queue"), el("th", { class: "num" }, "depth"), el("th", { class: "num" }, "in flight"),
      el("th", { class: "num" }, "delayed"), el("th", { class: "num" }, "DLQ depth"),
      el("th", { class: "num" }, "enqueue rate"), el("th", { class: "num" }, "dequeue rate"))), tbody),
    el("p", { class: "muted", id: "list-note" }, ""),
    el("h2", {}, "Send a test message"), sendForm(null));
  return async () => {
    const [list, stats] = await Promise.all([api("GET", "/queues"), api("GET", "/stats")]);
    const r = rates(stats.body.queues, Date.now());
    const byName = new Map(list.body.queues.map((x) => [x.name, x]));
    const rows = list.body.queues.map((x) => {
      const dlq = byName.get(x.name + ".dlq");
      const rt = r.get(x.name) || { enq: null, deq: null };
      return el("tr", { "data-queue": x.name },
        el("td", {}, el("a", { href: "#/queue/" + encodeURIComponent(x.name) }, x.name),
          x.unavailable ? el("span", { class: "muted" }, " (unavailable)") : ""),
        el("td", { class: "num depth" }, x.depth), el("td", { class: "num" }, x.in_flight),
        el("td", { class: "num" }, x.delayed), el("td", { class: "num" }, dlq ? dlq.depth : "–"),
        el("td", { class: "num" }, fmtRate(rt.enq)), el("td", { class: "num" }, fmtRate(rt.deq)));
    });
    tbody.replaceChildren(...rows);
    document.getElementById("list-note").textContent = rows.length === 0 ? "No queues yet: a queue exists from its first message." :
      list.body.next ? "Showing the first " + rows.length + " queues." : "";
  };
}

// One queue: its counts, a peek and the administration actions.
function queuePage(name) {
  const stats = el("div", { class: "stats", id: "queue-stats" });
  const max = el("input", { id: "peek-max", type: "number", min: "1", max: "1000", value: "10", size: "5" });
  const tbody = el("tbody", { id: "peek" });
  const actions = el("div", { class: "actions" },
    el("button", { id: "purge", class: "danger", on: { click: () => confirmAndDo(
      "Purge every message of " + name + "? This cannot be undone.", () => api("POST", q(name) + "/purge").then(peek)) } }, "Purge"),
    el("button", { id: "delete", class: "danger", on: { click: () => confirmAndDo(
      "Delete the queue " + name + " and all its messages?", async () => { await api("DELETE", q(name)); location.hash = "#/"; }) } }, "Delete queue"));
  const dlqName = name.endsWith(".dlq") ? name : name + ".dlq";
  const redrive = el("button", { id: "redrive", hidden: "", on: { click: () => confirmAndDo(
    "Move every message of " + dlqName + " back to its source queue?", () => api("POST", q(dlqName) + "/redrive")) } },
    "Redrive " + dlqName);
  actions.append(redrive);

  async function peek() {
    const n = Math.min(1000, Math.max(1, parseInt(max.value, 10) || 10));
    const r = await api("GET", q(name) + "/peek?max=" + n);
    const msgs = r.status === 404 ? [] : r.body.messages;
    tbody.replaceChildren(...msgs.map((m) => el("tr", {},
      el("td", { class: "num" }, m.id), el("td", {}, m.state), el("td", { class: "num" }, m.delivery_count),
      el("td", {}, fmtTime(m.enqueued_at)), el("td", { class: "payload" }, preview(m)))));
    if (msgs.length === 0) tbody.append(el("tr", {}, el("td", { colspan: "5", class: "muted" }, "empty")));
  }

  main.replaceChildren(
    el("p", {}, el("a", { href: "#/" }, "← all queues")),
    el("h1", {}, name), stats, actions,
    el("h2", {}, "Peek"),
    el("form", { class: "inline", on: { submit: (ev) => { ev.preventDefault(); peek().catch((e) => setStatus(e.message)); } } },
      "first", max, "messages", el("button", { type: "submit", id: "peek-button" }, "Peek")),
    el("table", {}, el("thead", {}, el("tr", {}, el("th", { class: "num" }, "id"), el("th", {}, "state"),
      el("th", { class: "num" }, "deliveries"), el("th", {}, "enqueued"), el("th", {}, "payload"))), tbody),
    el("h2", {}, "Send a test message"), sendForm(name));
  peek().catch((e) => setStatus(e.message));

  return async () => {
    const [st, dlq] = await Promise.all([api("GET", "/stats/" + encodeURIComponent(name)), api("GET", "/stats/" + encodeURIComponent(dlqName))]);
    const stat = (label, v, id) => el("span", {}, label + " ", el("b", { id }, v));
    if (st.status === 404) {
      stats.replaceChildren(el("span", { class: "muted" }, "No such queue (yet): it exists from its first message."));
    } else {
      const s = st.body;
      stats.replaceChildren(stat("depth", s.depth, "q-depth"), stat("in flight", s.in_flight, "q-inflight"),
        stat("delayed", s.delayed, "q-delayed"), stat("DLQ depth", dlq.status === 404 ? "–" : dlq.body.depth, "q-dlq"),
        stat("enqueued", s.enqueued_total, "q-enq"), stat("dequeued", s.dequeued_total, "q-deq"));
    }
    redrive.hidden = dlq.status === 404;
  };
}

async function refresh() {
  clearTimeout(pollTimer);
  try {
    if (view) await view();
    pollError = "";
  } catch (e) {
    pollError = e.message;
  }
  showStatus();
  pollTimer = setTimeout(refresh, POLL_MS);
}

function route() {
  const m = location.hash.match(/^#\/queue\/(.+)$/);
  setStatus("");
  view = m ? queuePage(decodeURIComponent(m[1])) : listPage();
  refresh();
}

window.addEventListener("hashchange", route);
route();
