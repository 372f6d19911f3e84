/**
 * The styles and the chart script inlined into every HTML report (no network,
 * no framework: the report opens from file:// anywhere). The script draws on
 * <canvas> by hand: four line charts over the seconds of a load run with the
 * SUT and shaping changes as vertical marks. It reads its data from the
 * `topas-data` JSON block and writes text only through textContent.
 */

export const REPORT_CSS = `
:root{--fg:#1d232b;--muted:#5d6875;--bg:#fff;--panel:#f5f7fa;--line:#d9dee5;--ok:#17803d;--bad:#c62828;--warn:#b26a00;--accent:#1f5fbf}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:var(--fg);background:var(--bg)}
main{max-width:1180px;margin:0 auto;padding:20px 24px 60px}
h1{font-size:20px;margin:0 0 4px}
h2{font-size:16px;margin:28px 0 10px;padding-bottom:4px;border-bottom:1px solid var(--line)}
.meta{color:var(--muted);font-size:13px}
.meta span{margin-right:16px}
.verdict{display:inline-block;padding:2px 10px;border-radius:12px;font-weight:600;color:#fff;margin-right:8px}
.v-passed{background:var(--ok)}.v-failed,.v-error,.v-timedOut{background:var(--bad)}.v-interrupted,.v-running,.v-pending,.v-partial{background:var(--warn)}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{background:var(--panel);font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.s-passed,.ok{color:var(--ok);font-weight:600}.s-failed,.s-error,.s-timedOut,.bad{color:var(--bad);font-weight:600}.s-skipped{color:var(--muted)}.s-interrupted,.s-partial{color:var(--warn);font-weight:600}
tr.step td:first-child{padding-left:26px}
.loc{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px;color:var(--accent)}
pre{background:var(--panel);border:1px solid var(--line);border-radius:4px;padding:8px 10px;overflow:auto;max-height:360px;font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;white-space:pre-wrap;word-break:break-word}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:14px}
.chart{border:1px solid var(--line);border-radius:6px;padding:8px 10px 4px;background:#fff}
.chart h3{font-size:13px;margin:0 0 4px;font-weight:600}
.chart canvas{width:100%;height:220px;display:block}
.legend{font-size:12px;color:var(--muted);margin:2px 0 4px}
.legend i{display:inline-block;width:12px;height:3px;vertical-align:middle;margin:0 4px 0 10px}
.mark-sut{color:#8e24aa}.mark-shape{color:#ef6c00}.mark-other{color:var(--muted)}
details{margin:6px 0}
summary{cursor:pointer;font-weight:600}
.empty{color:var(--muted);font-style:italic}
footer{margin-top:40px;color:var(--muted);font-size:12px}
`;

export const REPORT_SCRIPT = `
(function () {
  'use strict';
  var el = document.getElementById('topas-data');
  if (!el) return;
  var data = JSON.parse(el.textContent || '{}');
  var load = data.load;
  if (!load || !load.points || !load.points.length) return;
  var MARK_COLORS = { sut: '#8e24aa', shape: '#ef6c00', other: '#7b8794' };
  var charts = [
    { id: 'chart-rate', unit: '/s', series: [
      { key: 'targetRate', label: 'target', color: '#7b8794', dash: [6, 4] },
      { key: 'achievedRate', label: 'achieved', color: '#1f5fbf' } ] },
    { id: 'chart-latency', unit: 'ms', series: [
      { key: 'p50Ms', label: 'p50', color: '#17803d' },
      { key: 'p95Ms', label: 'p95', color: '#ef6c00' },
      { key: 'p99Ms', label: 'p99', color: '#c62828' } ] },
    { id: 'chart-errors', unit: '', series: [
      { key: 'errors', label: 'errors', color: '#c62828' },
      { key: 'dropped', label: 'dropped iterations', color: '#7b8794' } ] },
    { id: 'chart-vus', unit: '', series: [ { key: 'activeVus', label: 'active VUs', color: '#1f5fbf' } ] }
  ];
  function fmt(v) {
    if (v >= 1e6) return (v / 1e6).toFixed(1) + 'M';
    if (v >= 1e4) return (v / 1e3).toFixed(0) + 'k';
    if (v >= 100) return v.toFixed(0);
    if (v >= 10) return v.toFixed(1).replace(/\\.0$/, '');
    return v.toFixed(2).replace(/\\.?0+$/, '');
  }
  function niceMax(v) {
    if (!(v > 0)) return 1;
    var p = Math.pow(10, Math.floor(Math.log10(v)));
    var n = v / p;
    return (n <= 1 ? 1 : n <= 2 ? 2 : n <= 5 ? 5 : 10) * p;
  }
  function clock(sec) {
    var m = Math.floor(sec / 60), s = Math.round(sec % 60);
    return m > 0 ? m + 'm' + (s < 10 ? '0' : '') + s + 's' : s + 's';
  }
  function draw(chart) {
    var canvas = document.getElementById(chart.id);
    if (!canvas || !canvas.getContext) return;
    var legend = canvas.parentNode.querySelector('.legend');
    if (legend && !legend.childNodes.length) {
      chart.series.forEach(function (s) {
        var i = document.createElement('i');
        i.style.background = s.color;
        legend.appendChild(i);
        legend.appendChild(document.createTextNode(s.label));
      });
    }
    var dpr = window.devicePixelRatio || 1;
    var w = canvas.clientWidth || 520, h = canvas.clientHeight || 220;
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
    var ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    var pad = { l: 48, r: 12, t: 14, b: 24 };
    var pw = w - pad.l - pad.r, ph = h - pad.t - pad.b;
    var pts = load.points;
    var tMax = Math.max(1, pts[pts.length - 1].t + 1, (load.durationMs || 0) / 1000);
    var vMax = 0;
    pts.forEach(function (p) { chart.series.forEach(function (s) { var v = p[s.key]; if (typeof v === 'number' && v > vMax) vMax = v; }); });
    vMax = niceMax(vMax * 1.05);
    var x = function (t) { return pad.l + (t / tMax) * pw; };
    var y = function (v) { return pad.t + ph - (v / vMax) * ph; };
    ctx.font = '11px system-ui, sans-serif';
    ctx.strokeStyle = '#e3e7ec';
    ctx.fillStyle = '#5d6875';
    ctx.lineWidth = 1;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    for (var i = 0; i <= 4; i++) {
      var v = (vMax * i) / 4, yy = Math.round(y(v)) + 0.5;
      ctx.beginPath(); ctx.moveTo(pad.l, yy); ctx.lineTo(pad.l + pw, yy); ctx.stroke();
      ctx.fillText(fmt(v) + chart.unit, pad.l - 6, yy);
    }
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    var steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200];
    var step = steps[steps.length - 1];
    for (var si = 0; si < steps.length; si++) if (tMax / steps[si] <= 8) { step = steps[si]; break; }
    for (var tt = 0; tt <= tMax + 1e-9; tt += step) ctx.fillText(clock(tt), x(tt), pad.t + ph + 6);
    (load.marks || []).forEach(function (m, k) {
      var mx = Math.round(x(m.tMs / 1000)) + 0.5;
      ctx.save();
      ctx.strokeStyle = MARK_COLORS[m.kind] || MARK_COLORS.other;
      ctx.setLineDash([3, 3]);
      ctx.beginPath(); ctx.moveTo(mx, pad.t); ctx.lineTo(mx, pad.t + ph); ctx.stroke();
      ctx.setLineDash([]);
      ctx.fillStyle = ctx.strokeStyle;
      ctx.textBaseline = 'top';
      ctx.textAlign = 'left';
      ctx.fillText(String(k + 1), mx + 3, pad.t);
      ctx.restore();
    });
    chart.series.forEach(function (s) {
      ctx.save();
      ctx.strokeStyle = s.color;
      ctx.lineWidth = 1.6;
      if (s.dash) ctx.setLineDash(s.dash);
      ctx.beginPath();
      var open = false;
      pts.forEach(function (p) {
        var v = p[s.key];
        if (typeof v !== 'number') { open = false; return; }
        var px = x(p.t + 0.5), py = y(v);
        if (open) ctx.lineTo(px, py); else ctx.moveTo(px, py);
        open = true;
      });
      ctx.stroke();
      ctx.restore();
    });
    ctx.strokeStyle = '#9aa5b1';
    ctx.strokeRect(pad.l + 0.5, pad.t + 0.5, pw, ph);
  }
  function drawAll() {
    charts.forEach(draw);
    document.body.setAttribute('data-charts-drawn', String(charts.length));
    // ms since navigation start when the last chart was drawn (bench/report-size reads it)
    document.body.setAttribute('data-charts-ms', String(Math.round(performance.now())));
  }
  drawAll();
  var pending;
  window.addEventListener('resize', function () { clearTimeout(pending); pending = setTimeout(drawAll, 100); });
})();
`;
