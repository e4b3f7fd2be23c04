// The status page at `GET /` on the control port: one HTML file with its CSS and script inline,
// no request but its own polls of `/v1/status` (not even a favicon) (the Content-Security-Policy says so), readable
// on a phone. The page holds no data itself: the numbers come with the token, if one is set,
// which the page reads from its fragment (`/#token=…`, never sent to a server) or asks for.
import { createHash } from 'node:crypto';

/** How often the page reads /v1/status. */
export const STATUS_POLL_MS = 2000;

const style = `
:root { color-scheme: light dark; --muted: #777; --line: #8884; font: 15px/1.4 system-ui, sans-serif; }
body { margin: 0 auto; padding: 0.75rem; max-width: 72rem; }
header { display: flex; flex-wrap: wrap; gap: 0.25rem 1rem; align-items: baseline; border-bottom: 1px solid var(--line); padding-bottom: 0.5rem; }
h1 { font-size: 1.3rem; margin: 0; }
h2 { font-size: 1rem; margin: 0 0 0.4rem; }
.muted, #updated { color: var(--muted); font-size: 0.85rem; }
#app { overflow-wrap: anywhere; }
#state.ready { color: #2a7d2a; } #state.bad { color: #c0392b; }
main { display: grid; gap: 0.75rem; grid-template-columns: repeat(auto-fit, minmax(15rem, 1fr)); margin-top: 0.75rem; }
section { border: 1px solid var(--line); border-radius: 0.5rem; padding: 0.6rem 0.75rem; min-width: 0; }
dl { display: grid; grid-template-columns: auto 1fr; gap: 0.15rem 0.75rem; margin: 0; }
dt { color: var(--muted); } dd { margin: 0; text-align: right; font-variant-numeric: tabular-nums; overflow-wrap: anywhere; }
table { width: 100%; border-collapse: collapse; font-size: 0.9rem; }
td, th { text-align: left; padding: 0.1rem 0.25rem; border-top: 1px solid var(--line); overflow-wrap: anywhere; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
form { display: flex; flex-wrap: wrap; gap: 0.5rem; margin-top: 0.75rem; } input { flex: 1 1 12rem; min-width: 0; font: inherit; }
[hidden] { display: none !important; }
`;

const script = `
const POLL_MS = ${STATUS_POLL_MS};
const $ = (id) => document.getElementById(id);
const fromHash = new URLSearchParams(location.hash.slice(1)).get('token');
if (fromHash) { sessionStorage.setItem('switchboard-token', fromHash); history.replaceState(null, '', location.pathname); }
let previous = null;
const int = (n) => (n === null || n === undefined ? '–' : Math.round(n).toLocaleString('en'));
const num = (n, digits = 1) => (n === null || n === undefined ? '–' : n.toLocaleString('en', { maximumFractionDigits: digits }));
const set = (id, value) => { const el = $(id); if (el.textContent !== value) el.textContent = value; };
function rows(id, entries, empty) {
  const body = $(id);
  body.replaceChildren();
  if (entries.length === 0) entries = [[empty]];
  for (const cells of entries) {
    const tr = document.createElement('tr');
    cells.forEach((cell) => {
      const td = document.createElement('td');
      td.textContent = typeof cell === 'number' ? int(cell) : String(cell);
      if (typeof cell === 'number') td.className = 'n';
      if (cells.length === 1) td.colSpan = 9;
      tr.append(td);
    });
    body.append(tr);
  }
}
function show(s) {
  document.title = 'Switchboard ' + s.node;
  set('version', s.version); set('node', s.node); set('app', s.appUrl); set('upstream', s.upstream);
  set('state', s.ready ? 'ready' : s.state + (s.reason ? ': ' + s.reason : ''));
  $('state').className = s.ready ? 'ready' : 'bad';
  set('processes', int(s.processes));
  set('open', int(s.connections.open)); set('sessions', int(s.connections.sessions));
  rows('by-mode', s.connections.byMode.map((c) => [c.mode, c.transport, c.connections]), 'no connections');
  const seconds = previous ? (Date.parse(s.at) - Date.parse(previous.at)) / 1000 : 0;
  const rate = (now, before) => (seconds > 0 ? Math.max(0, now - before) / seconds : null);
  set('in-rate', num(previous && rate(s.messages.in, previous.messages.in)));
  set('out-rate', num(previous && rate(s.messages.out, previous.messages.out)));
  set('in-total', int(s.messages.in)); set('out-total', int(s.messages.out));
  set('outbox-max', int(s.outbox.maxMessages)); set('outbox-waits', int(s.outbox.waits));
  set('outbox-p50', num(s.outbox.p50)); set('outbox-p99', num(s.outbox.p99));
  set('dropped', int(s.dropped.total));
  rows('drops', Object.entries(s.dropped.byReason).map(([reason, n]) => [reason, n]), 'none');
  set('webhook-attempts', int(s.webhooks.attempts)); set('webhook-p50', num(s.webhooks.p50Ms, 2)); set('webhook-p99', num(s.webhooks.p99Ms, 2));
  set('webhook-failures', int(s.webhooks.failures)); set('webhook-waiting', int(s.webhooks.waiting));
  $('broker-none').hidden = s.broker !== null; $('broker').hidden = s.broker === null;
  if (s.broker) {
    set('broker-buffered', int(s.broker.buffered)); set('broker-p99', num(s.broker.p99Ms, 2));
    rows('publishes', Object.entries(s.broker.publishes).map(([result, n]) => [result, n]), 'no publishes yet');
  }
  $('cluster-none').hidden = s.cluster !== null; $('cluster').hidden = s.cluster === null;
  if (s.cluster) {
    rows('nodes', s.cluster.nodes.map((n) => [n.node, n.state, n.sessions, n.processes]).concat(s.cluster.missing.map((m) => [m, 'not answering', '', ''])), 'no nodes');
  }
  set('updated', 'updated ' + new Date(s.at).toLocaleTimeString());
  previous = s;
}
async function poll() {
  const token = sessionStorage.getItem('switchboard-token');
  try {
    const res = await fetch('/v1/status', { headers: token ? { authorization: 'Bearer ' + token } : {}, cache: 'no-store' });
    $('login').hidden = res.status !== 401;
    if (res.ok) { show(await res.json()); $('error').hidden = true; }
    else if (res.status !== 401) { $('error').hidden = false; set('error', 'status answered ' + res.status); }
  } catch (err) {
    $('error').hidden = false; set('error', 'control port unreachable: ' + err.message);
  }
  setTimeout(poll, POLL_MS);
}
$('login').addEventListener('submit', (e) => {
  e.preventDefault();
  sessionStorage.setItem('switchboard-token', $('token').value);
  $('token').value = '';
});
poll();
`;

const hash = (text: string) => `'sha256-${createHash('sha256').update(text).digest('base64')}'`;

/** Only the inline style and script, and requests to this port. */
export const STATUS_PAGE_POLICY = `default-src 'none'; script-src ${hash(script)}; style-src ${hash(style)}; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`;

const dl = (items: Array<[string, string]>) => `<dl>${items.map(([label, id]) => `<dt>${label}</dt><dd id="${id}">–</dd>`).join('')}</dl>`;

export const STATUS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Switchboard</title>
<link rel="icon" href="data:,">
<style>${style}</style>
</head>
<body>
<header>
<h1>Switchboard <span id="version" class="muted"></span></h1>
<span>node <b id="node">–</b></span>
<span id="state">–</span>
<span id="updated"></span>
</header>
<p class="muted">app <span id="app">–</span> · upstream <span id="upstream">–</span> · processes <span id="processes">–</span></p>
<p id="error" hidden></p>
<form id="login" hidden><input id="token" type="password" autocomplete="off" placeholder="control token" aria-label="control token"><button>Show</button></form>
<main>
<section><h2>Connections</h2>${dl([['open', 'open'], ['sessions', 'sessions']])}
<table><thead><tr><th>mode</th><th>transport</th><th>open</th></tr></thead><tbody id="by-mode"></tbody></table></section>
<section><h2>Messages per second</h2>${dl([['in', 'in-rate'], ['out', 'out-rate'], ['in since start', 'in-total'], ['out since start', 'out-total']])}</section>
<section><h2>Outbox</h2>${dl([['bound (messages)', 'outbox-max'], ['pushes that waited', 'outbox-waits'], ['depth p50', 'outbox-p50'], ['depth p99', 'outbox-p99']])}</section>
<section><h2>Drops</h2>${dl([['since start', 'dropped']])}
<table><thead><tr><th>reason</th><th>messages</th></tr></thead><tbody id="drops"></tbody></table></section>
<section><h2>Webhooks</h2>${dl([['attempts', 'webhook-attempts'], ['p50 ms', 'webhook-p50'], ['p99 ms', 'webhook-p99'], ['failed for good', 'webhook-failures'], ['waiting to retry', 'webhook-waiting']])}</section>
<section><h2>Broker</h2><p id="broker-none" class="muted">no broker configured</p>
<div id="broker" hidden>${dl([['events waiting', 'broker-buffered'], ['publish p99 ms', 'broker-p99']])}
<table><thead><tr><th>publishes</th><th></th></tr></thead><tbody id="publishes"></tbody></table></div></section>
<section><h2>Cluster</h2><p id="cluster-none" class="muted">not in a cluster</p>
<div id="cluster" hidden><table><thead><tr><th>node</th><th>state</th><th>sessions</th><th>processes</th></tr></thead><tbody id="nodes"></tbody></table></div></section>
</main>
<script>${script}</script>
</body>
</html>
`;
