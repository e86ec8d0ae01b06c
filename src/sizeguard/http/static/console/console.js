// sizeguard console: plain JS, no framework, no network but this service.
"use strict";

const $ = (sel) => document.querySelector(sel);
const POLL_MS = 1000;
let session = null;   // the overview's role/bot once signed in
let lastFeedId = 0;
let timer = null;

function csrf() {
  const m = document.cookie.match(/(?:^|;\s*)sg_csrf=([^;]+)/);
  return m ? decodeURIComponent(m[1]) : "";
}

async function api(path, body) {
  const opts = { credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    opts.method = "POST";
    opts.headers["Content-Type"] = "application/json";
    opts.headers["X-CSRF-Token"] = csrf();
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  let data = null;
  try { data = await r.json(); } catch (e) { data = null; }
  if (!r.ok) {
    const err = new Error((data && (data.detail || data.title)) || r.statusText);
    err.status = r.status;
    err.body = data;
    throw err;
  }
  return data;
}

// -- formatting ---------------------------------------------------------------------------
function num(v, digits = 2) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  return Number(v).toLocaleString("en-US", { maximumFractionDigits: digits });
}
function price(v) {
  if (v === null || v === undefined) return "–";
  const a = Math.abs(v);
  return num(v, a >= 100 ? 2 : a >= 1 ? 4 : 8);
}
function pct(v, digits = 1) {
  return v === null || v === undefined ? "–" : (v * 100).toFixed(digits) + "%";
}
function when(t) {
  return t ? new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC" : "–";
}
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}
function td(v, cls) { return el("td", cls ? { class: cls } : {}, v === null || v === undefined ? "–" : v); }
function fill(tbody, rows, empty, cols) {
  tbody.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { class: "muted", colspan: String(cols) }, empty))]));
}
function copyId(id) {
  const b = el("button", { type: "button", class: "copy", title: "copy the id", "data-id": id }, "copy");
  b.addEventListener("click", async () => {
    try { await navigator.clipboard.writeText(id); b.textContent = "copied"; }
    catch (e) { window.getSelection().selectAllChildren(b.previousSibling); b.textContent = "selected"; }
    setTimeout(() => { b.textContent = "copy"; }, 1200);
  });
  return el("td", { class: "id" }, el("code", {}, id), b);
}

// -- sign-in ------------------------------------------------------------------------------
function showLogin(message) {
  session = null;
  if (timer) { clearInterval(timer); timer = null; }
  $("#app").hidden = true; $("#who").hidden = true; $("#login").hidden = false;
  $("#login-error").textContent = message || "";
}

async function start() {
  try {
    await refresh();
  } catch (e) {
    showLogin(e.status === 401 ? "" : e.message);
    return;
  }
  $("#login").hidden = true; $("#app").hidden = false; $("#who").hidden = false;
  await loadMarkets();
  if (!timer) timer = setInterval(() => refresh().catch(onPollError), POLL_MS);
}

function onPollError(e) {
  if (e.status === 401) showLogin("The session ended: sign in again.");
  else $("#live").textContent = "not answering: " + e.message;
}

$("#login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("#login-error").textContent = "";
  try {
    await api("/ui/api/login", { token: $("#token").value.trim() });
    $("#token").value = "";
    lastFeedId = 0; $("#feed-list").replaceChildren();
    await start();
  } catch (e) { $("#login-error").textContent = e.message; }
});

$("#logout").addEventListener("click", async () => {
  try { await api("/ui/api/logout", {}); } catch (e) { /* ended anyway */ }
  showLogin("Signed out.");
});

// -- the account ----------------------------------------------------------------------------
async function refresh() {
  const o = await api("/ui/api/overview");
  session = o;
  const admin = o.role === "admin";
  document.body.classList.toggle("is-admin", admin);
  $("#role").textContent = admin ? "admin" : "bot (read-only)";
  $("#role").className = "badge " + (admin ? "admin" : "bot");
  $("#scope").textContent = admin ? `account ${o.account_id}` : `${o.bot.name} on ${o.account_id}`;
  $("#live").textContent = `${o.exchange}${o.live ? " (live)" : " (paper)"} · policy ${o.policy} · ${when(o.now)}`;
  $("#account-id").textContent = `${o.account_id} · policy ${o.policy}`;
  const down = $("#store-down");
  down.hidden = !o.store_down_since;
  down.textContent = o.store_down_since ? `The state store has not answered since ${when(o.store_down_since)}.` : "";
  renderAccount(o.account);
  renderBots(o.bots);
  renderBook(o, admin);
  renderAlerts(o.alerts);
  await pollFeed();
}

function renderAccount(a) {
  const halts = $("#halts");
  if (!a) {
    halts.replaceChildren(el("p", { class: "muted" }, "No account yet: it opens with the first decision that gives equity."));
    $("#account-figures").replaceChildren();
    fill($("#caps tbody"), [], "–", 4);
    return;
  }
  $("#resume").hidden = !a.halted;
  if (a.halts.length) {
    halts.replaceChildren(...a.halts.map((h) => el("div", { class: "banner bad halt" },
      el("strong", {}, `HALTED: ${h.reason}`), ` — ${h.note}. Lifts ${h.lifts}.`)));
  } else {
    halts.replaceChildren(el("div", { class: "banner ok" }, "Trading open: no halt in force."));
  }
  const figs = [
    ["equity", num(a.equity) + " " + a.quote], ["peak equity", num(a.peak_equity)],
    ["drawdown", pct(a.drawdown, 2)], ["realised today", num(a.realised_pnl_today)],
    ["margin in use", num(a.margin_in_use)], ["gross exposure", num(a.gross_exposure)],
    ["open positions", a.open_positions], ["live reservations", a.live_reservations],
    ["losing streak", a.losing_streak],
  ];
  $("#account-figures").replaceChildren(...figs.map(([k, v]) =>
    el("div", { class: "figure" }, el("span", { class: "k" }, k), el("span", { class: "v" }, String(v)))));
  const rows = a.caps.map((c) => {
    const bar = el("div", { class: "bar" }, el("span"));
    const share = c.ratio === null ? null : Math.min(c.ratio, 1);
    bar.firstChild.style.width = share === null ? "0" : (share * 100).toFixed(1) + "%";
    if (c.ratio !== null && c.ratio >= 1) bar.classList.add("full");
    else if (c.ratio !== null && c.ratio >= 0.8) bar.classList.add("high");
    const ratioish = /share|leverage|utilisation|drawdown|loss/.test(c.name);
    const fmt = (v) => (v === null ? "no cap" : (ratioish && !/leverage/.test(c.name) ? pct(v, 2) : num(v, 2)));
    return el("tr", {}, td(c.name), td(fmt(c.used)), td(fmt(c.cap)),
      el("td", { class: "wide" }, bar, el("span", { class: "muted" }, c.ratio === null ? " no cap" : " " + pct(c.ratio, 0))));
  });
  fill($("#caps tbody"), rows, "–", 4);
}

function renderBots(bots) {
  const rows = bots.map((b) => el("tr", {}, td(b.name), td(pct(b.budget, 0)), td(num(b.equity_share)),
    td(b.slots ? `${b.slots_used} / ${b.slots}${b.max_positions ? "" : " (budget share)"}` : `${b.slots_used} (account slots)`), td(num(b.margin_in_use)), td(num(b.gross_exposure))));
  fill($("#bots-table tbody"), rows, "No bots: sizeguard bots add NAME", 6);
}

function renderBook(o, admin) {
  const now = o.now;
  const res = o.reservations.map((r) => {
    const tr = el("tr", { "data-id": r.id }, copyId(r.id), td(r.bot), td(r.symbol), td(r.side), td(r.amount),
      td(num(r.notional)), td(num(r.margin)), td(num(r.leverage, 1) + "x"),
      td(Math.max(0, Math.round(r.expires_at - now)) + " s"));
    if (admin) {
      tr.append(el("td", {}, el("button", { type: "button", class: "danger", onclick: () => release(r.id) }, "release")));
    }
    return tr;
  });
  fill($("#reservations tbody"), res, "No live reservations.", 10);
  const pos = o.positions.map((p) => el("tr", {}, copyId(p.id), td(p.bot || p.source), td(p.symbol), td(p.side),
    td(p.amount), td(price(p.entry_price)), td(num(p.notional)), td(num(p.margin)), td(num(p.leverage, 1) + "x"),
    td(price(p.stop_price))));
  fill($("#positions tbody"), pos, "No open positions.", 10);
}

$("#halt-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const reason = $("#halt-reason").value.trim();
  if (!reason || !window.confirm(`Halt trading on the whole account: "${reason}"?`)) return;
  try { await api("/ui/api/halt", { reason }); $("#halt-reason").value = ""; await refresh(); }
  catch (e) { window.alert(e.message); }
});
$("#resume").addEventListener("click", async () => {
  if (!window.confirm("Resume trading?")) return;
  try { await api("/ui/api/halt", {}); await refresh(); }
  catch (e) { window.alert(e.message); }
});

async function release(id) {
  if (!window.confirm(`Release reservation ${id}? Its margin and slot are freed.`)) return;
  try { await api("/ui/api/release", { reservation_id: id }); await refresh(); }
  catch (e) { window.alert(e.message); }
}

function renderAlerts(alerts) {
  const list = $("#alerts-list");
  list.replaceChildren(...(alerts.length ? alerts.map((a) => el("li", { class: "alert " + a.level },
    el("span", { class: "t" }, when(a.at)), el("strong", {}, a.title), el("div", { class: "muted" }, a.body)))
    : [el("li", { class: "muted" }, "No alerts.")]));
}

// -- the live feed ----------------------------------------------------------------------------
function traceTable(trace) {
  const rows = (trace || []).map((s) => {
    const vals = Object.entries(s).filter(([k]) => !["step", "note", "bound"].includes(k))
      .map(([k, v]) => `${k}=${typeof v === "number" ? num(v, 6) : JSON.stringify(v)}`).join("  ");
    return el("tr", {}, td(s.step), td(s.bound || ""), el("td", { class: "vals" }, vals), td(s.note || ""));
  });
  return el("table", { class: "trace" }, el("thead", {}, el("tr", {}, el("th", {}, "step"), el("th", {}, "bound"),
    el("th", {}, "values"), el("th", {}, "note"))), el("tbody", {}, ...rows));
}

function feedItem(e) {
  const d = e.data || {};
  const status = e.status || e.kind;
  const head = el("summary", {},
    el("span", { class: "t" }, when(e.at)), " ",
    el("span", { class: "st " + status }, status), " ",
    el("strong", {}, `${e.side || ""} ${e.symbol || ""}`), " ",
    e.kind === "decision" ? `${d.amount || ""} (notional ${num(d.notional)}, ${num(d.leverage, 1)}x)` : (e.note || e.kind), " ",
    el("span", { class: "muted" }, e.bot ? `by ${e.bot}` : ""), " ",
    el("span", { class: "reasons" }, (e.reasons || []).join(", ")));
  const body = e.kind === "decision" ? traceTable(d.trace) : el("pre", {}, JSON.stringify(d, null, 2));
  return el("li", { "data-journal-id": String(e.id) }, el("details", {}, head, body));
}

async function pollFeed() {
  const f = await api(`/ui/api/feed?after=${lastFeedId}&last=50`);
  const list = $("#feed-list");
  const fresh = f.entries.filter((e) => e.id > lastFeedId).sort((a, b) => a.id - b.id);
  for (const e of fresh) {
    list.prepend(feedItem(e));
    lastFeedId = Math.max(lastFeedId, e.id);
  }
  while (list.children.length > 200) list.lastChild.remove();
  if (!list.children.length) list.append(el("li", { class: "muted empty" }, "No decisions yet."));
  else list.querySelectorAll(".empty").forEach((n) => n.remove());
}

// -- what-if ------------------------------------------------------------------------------------
async function loadMarkets() {
  const markets = await api("/ui/api/markets");
  const sel = $("#wi-symbol");
  if (!sel.options.length) sel.replaceChildren(...markets.map((m) => el("option", { value: m.symbol }, m.symbol)));
  const presets = $("#wi-preset");
  if (!presets.options.length && session) {
    presets.replaceChildren(...session.presets.map((p, i) => el("option", { value: i === 0 ? "" : p }, p)));
  }
  const rows = markets.map((m) => {
    const tiers = m.tiers && m.tiers.length
      ? el("details", {}, el("summary", {}, `${m.tiers.length} tiers`), el("table", { class: "tiers" },
        el("tr", {}, ...["tier", "notional from", "to", "max lev", "mmr", "maint. amount"].map((h) => el("th", {}, h))),
        ...m.tiers.map((t) => el("tr", {}, td(t.tier), td(num(t.min_notional, 0)), td(num(t.max_notional, 0)),
          td(num(t.max_leverage, 1) + "x"), td(pct(t.maintenance_margin_rate, 2)), td(num(t.maintenance_amount, 0))))))
      : "none";
    return el("tr", {}, td(m.symbol), td(m.type), td(m.settle || m.quote), td(m.amount_step), td(m.min_amount),
      td(m.min_cost), td(m.max_leverage ? num(m.max_leverage, 1) + "x" : "–"), td(pct(m.taker, 3)), el("td", {}, tiers));
  });
  fill($("#markets-table tbody"), rows, "No markets.", 9);
}

$("#whatif-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("#whatif-error").textContent = "";
  const form = new FormData(ev.target);
  const body = {};
  for (const [k, v] of form.entries()) {
    if (k === "on_account") continue;
    if (v === "") continue;
    body[k] = ["symbol", "side", "preset", "regime", "volatility"].includes(k) ? v : Number(v);
  }
  body.on_account = form.get("on_account") === "on";
  try {
    const d = await api("/ui/api/whatif", body);
    renderDecision(d);
  } catch (e) {
    const fields = e.body && e.body.errors ? " (" + e.body.errors.map((x) => x.field).join(", ") + ")" : "";
    $("#whatif-error").textContent = e.message + fields;
    $("#whatif-result").replaceChildren();
  }
});

function renderDecision(d) {
  const pre = el("pre", { id: "whatif-json", class: "json" }, JSON.stringify(d, null, 1));
  const figs = [["status", d.status], ["amount", d.amount], ["notional", num(d.notional)], ["margin", num(d.margin)],
    ["leverage", num(d.leverage, 2) + "x"], ["risk", `${num(d.risk)} (${num(d.risk_pct, 3)}%)`],
    ["stop", price(d.stop_price)], ["liquidation", price(d.liquidation_price)], ["policy", d.policy]];
  $("#whatif-result").replaceChildren(
    el("div", { class: "figures", id: "whatif-figures" }, ...figs.map(([k, v]) =>
      el("div", { class: "figure" }, el("span", { class: "k" }, k), el("span", { class: "v " + (k === "status" ? "st " + v : "") }, String(v))))),
    el("p", {}, el("strong", {}, "Reasons: "), el("span", { id: "whatif-reasons" }, (d.reasons || []).join(", ") || "none")),
    traceTable(d.trace),
    el("details", {}, el("summary", {}, "JSON (as sizeguard size --json)"), pre));
}

start();
