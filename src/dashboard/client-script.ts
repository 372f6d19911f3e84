/**
 * The browser side of the live pages, inlined (no framework, no network but
 * the dashboard's own WebSocket, which the session cookie authorizes). Text
 * from runs is only ever set through textContent.
 */

const COMMON = `
  function wsUrl(path) { return (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + path; }
  function td(text, cls) { var e = document.createElement('td'); e.textContent = text == null ? '' : String(text); if (cls) e.className = cls; return e; }
  function started(iso) { return iso ? String(iso).replace('T', ' ').replace(/\\.\\d+Z$/, 'Z') : ''; }
`;

/** /queue: the server pushes the queue whenever it changes; the tables are rebuilt from it. */
export const QUEUE_SCRIPT = `
(function () {
  'use strict';
  ${COMMON}
  function link(r) {
    var c = document.createElement('td'); c.className = 'run-id';
    var a = document.createElement('a'); a.href = '/runs/' + encodeURIComponent(r.runId) + '/logs'; a.textContent = r.runId;
    c.appendChild(a); return c;
  }
  function fill(id, runs, withPosition) {
    var body = document.querySelector('#' + id + ' tbody');
    while (body.firstChild) body.removeChild(body.firstChild);
    runs.forEach(function (r, i) {
      var tr = document.createElement('tr'); tr.setAttribute('data-run-id', r.runId);
      if (withPosition) tr.appendChild(td(i + 1, 'num'));
      tr.appendChild(link(r)); tr.appendChild(td(r.state, 's-' + r.state)); tr.appendChild(td(r.app)); tr.appendChild(td(r.name)); tr.appendChild(td(started(r.startedAt)));
      body.appendChild(tr);
    });
  }
  var live = document.getElementById('queue-live');
  var updates = 0;
  function connect() {
    var ws = new WebSocket(wsUrl('/ws/queue'));
    ws.onmessage = function (ev) {
      var m = JSON.parse(ev.data);
      if (m.type !== 'queue') return;
      fill('queue-running', m.running, false);
      fill('queue-pending', m.pending, true);
      document.getElementById('queue-counts').textContent = m.running.length + ' running, ' + m.pending.length + ' pending';
      updates++;
      document.body.setAttribute('data-queue-updates', String(updates));
      live.textContent = 'live: updated ' + new Date().toISOString().slice(11, 19) + ' UTC';
    };
    ws.onclose = function () { live.textContent = 'disconnected; retrying'; setTimeout(connect, 2000); };
  }
  connect();
})();
`;

/** /runs/<id>/logs: the lines of log.ndjson as they are appended, in order, then the run's final state. */
export const LOGS_SCRIPT = `
(function () {
  'use strict';
  ${COMMON}
  var log = document.getElementById('log');
  var status = document.getElementById('log-status');
  var stateEl = document.getElementById('run-state');
  var id = log.getAttribute('data-run-id');
  var count = 0;
  var ended = false;
  function line(l) {
    var d = document.createElement('div');
    d.className = 'line lvl-' + l.level;
    d.textContent = new Date(l.ts).toISOString().slice(11, 23) + ' [' + l.source + '] ' + (l.level === 'info' ? '' : String(l.level).toUpperCase() + ' ') + l.message;
    return d;
  }
  var ws = new WebSocket(wsUrl('/ws/logs/' + encodeURIComponent(id)));
  ws.onopen = function () { status.textContent = 'following'; };
  ws.onmessage = function (ev) {
    var m = JSON.parse(ev.data);
    if (m.type === 'lines') {
      var atBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 4;
      var frag = document.createDocumentFragment();
      m.lines.forEach(function (l) { frag.appendChild(line(l)); });
      log.appendChild(frag);
      count += m.lines.length;
      log.setAttribute('data-lines', String(count));
      if (atBottom) window.scrollTo(0, document.body.scrollHeight);
    } else if (m.type === 'state') {
      stateEl.textContent = m.state; stateEl.className = 's-' + m.state;
    } else if (m.type === 'end') {
      ended = true;
      stateEl.textContent = m.state; stateEl.className = 's-' + m.state;
      status.textContent = 'run ended';
      document.body.setAttribute('data-log-ended', m.state);
    } else if (m.type === 'error') {
      status.textContent = m.message;
    }
  };
  ws.onclose = function () { if (!ended) status.textContent = 'disconnected: reload to resume'; };
})();
`;
