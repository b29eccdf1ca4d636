// anonstream dashboard: polls /dashboard/data.json and draws plain SVG charts.
// No dependency, no external asset. Text from the data only ever goes through textContent.
// Each chart's figure carries data-points (how many points or bars it draws); the body gets
// data-ready="true" once every chart has data (the browser test checks both).
"use strict";

const POLL_MS = 2000;
const SVGNS = "http://www.w3.org/2000/svg";
const PALETTE = ["#3b6fd8", "#e0813a", "#2f9e72", "#c4475a", "#8a5cc9", "#b59b2a",
  "#4aa3c9", "#7d8597", "#d96bb0", "#5c7a2e"];
const H = 240;
const M = { top: 12, right: 16, bottom: 28, left: 52 };

function svgEl(tag, attrs, text) {
  const node = document.createElementNS(SVGNS, tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function htmlEl(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function plotOf(id) {
  const figure = document.getElementById(id);
  const plot = figure.querySelector(".plot");
  plot.replaceChildren();
  return { figure, plot, width: Math.max(320, plot.clientWidth || 560) };
}

function empty(id, message) {
  const { figure, plot } = plotOf(id);
  plot.appendChild(htmlEl("div", "empty", message));
  figure.dataset.points = "0";
}

function fmt(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  const abs = Math.abs(value);
  if (abs >= 1e6) return (value / 1e6).toFixed(1) + "M";
  if (abs >= 1e4) return (value / 1e3).toFixed(0) + "k";
  if (abs >= 100) return value.toFixed(0);
  if (abs >= 10) return String(Number(value.toFixed(1)));
  return String(Number(value.toFixed(2)));
}

function hhmm(iso) { return String(iso).slice(11, 16); }
function clock(t) { return new Date(t * 1000).toISOString().slice(11, 19); }

function niceMax(value) {
  if (!(value > 0)) return 1;
  const exp = Math.pow(10, Math.floor(Math.log10(value)));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * exp >= value) return step * exp;
  return 10 * exp;
}

function legend(plot, names) {
  const box = htmlEl("div", "legend");
  names.forEach((name, i) => {
    const item = htmlEl("span");
    const swatch = htmlEl("i");
    swatch.style.background = PALETTE[i % PALETTE.length];
    item.appendChild(swatch);
    item.appendChild(document.createTextNode(name));
    box.appendChild(item);
  });
  plot.appendChild(box);
}

function yAxis(svg, width, max, unit) {
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    const y = M.top + (H - M.top - M.bottom) * (1 - i / 4);
    svg.appendChild(svgEl("line", { x1: M.left, x2: width - M.right, y1: y, y2: y, class: "gridline" }));
    svg.appendChild(svgEl("text", { x: M.left - 6, y: y + 4, "text-anchor": "end" }, fmt(v) + (unit || "")));
  }
}

// Vertical stacked bars: bars = [{label, values: [..]}], series names in `names`.
function stackedBars(id, bars, names) {
  if (!bars.length) return empty(id, "no released window yet");
  const { figure, plot, width } = plotOf(id);
  const svg = svgEl("svg", { viewBox: `0 0 ${width} ${H}`, preserveAspectRatio: "none" });
  const max = niceMax(Math.max(...bars.map((b) => b.values.reduce((a, v) => a + (v || 0), 0))));
  yAxis(svg, width, max);
  const inner = width - M.left - M.right;
  const slot = inner / bars.length;
  const barW = Math.max(2, Math.min(40, slot * 0.7));
  const scale = (H - M.top - M.bottom) / max;
  bars.forEach((bar, i) => {
    let y = H - M.bottom;
    const x = M.left + slot * i + (slot - barW) / 2;
    bar.values.forEach((v, s) => {
      const h = (v || 0) * scale;
      y -= h;
      const rect = svgEl("rect", { x, y, width: barW, height: Math.max(0, h), fill: PALETTE[s % PALETTE.length] });
      rect.appendChild(svgEl("title", {}, `${bar.label} ${names[s]}: ${fmt(v || 0)}`));
      svg.appendChild(rect);
    });
    if (bars.length <= 16 || i % Math.ceil(bars.length / 16) === 0) {
      svg.appendChild(svgEl("text", { x: x + barW / 2, y: H - 10, "text-anchor": "middle" }, bar.label));
    }
  });
  plot.appendChild(svg);
  legend(plot, names);
  figure.dataset.points = String(bars.filter((b) => b.values.some((v) => v > 0)).length);
}

// Horizontal bars: rows = [{label, value, marker?, title?}].
function hbars(id, rows, unit, markerName) {
  if (!rows.length) return empty(id, "no released cell yet");
  const { figure, plot, width } = plotOf(id);
  const rowH = Math.min(22, (H - 8) / rows.length);
  const svg = svgEl("svg", { viewBox: `0 0 ${width} ${H}`, preserveAspectRatio: "none" });
  const labelW = Math.min(260, width * 0.42);
  const max = niceMax(Math.max(...rows.map((r) => Math.max(r.value || 0, r.marker || 0))));
  const inner = width - labelW - 60;
  rows.forEach((row, i) => {
    const y = 4 + i * rowH;
    const label = row.label.length > 40 ? row.label.slice(0, 39) + "…" : row.label;
    svg.appendChild(svgEl("text", { x: labelW - 6, y: y + rowH * 0.68, "text-anchor": "end", class: "label" }, label));
    const w = ((row.value || 0) / max) * inner;
    const rect = svgEl("rect", { x: labelW, y: y + 2, width: Math.max(1, w), height: rowH - 5, fill: PALETTE[0] });
    rect.appendChild(svgEl("title", {}, row.title || `${row.label}: ${fmt(row.value)}${unit || ""}`));
    svg.appendChild(rect);
    if (row.marker) {
      const mx = labelW + (row.marker / max) * inner;
      svg.appendChild(svgEl("line", { x1: mx, x2: mx, y1: y + 1, y2: y + rowH - 2, stroke: PALETTE[1], "stroke-width": 3 }));
    }
    svg.appendChild(svgEl("text", { x: labelW + w + 4, y: y + rowH * 0.68 }, fmt(row.value) + (unit || "")));
  });
  plot.appendChild(svg);
  if (markerName) legend(plot, ["median", markerName]);
  figure.dataset.points = String(rows.filter((r) => r.value > 0).length);
}

// Lines over time: series = [{name, points: [[t, v], ...]}]. The chart's data-points counts
// the points above zero (a rate that stayed 0 is no data), or every point with countZeros.
function lines(id, series, unit, fixedMax, countZeros) {
  const drawn = series.filter((s) => s.points.length > 0);
  const count = drawn.reduce((a, s) => a + s.points.filter((p) => countZeros || p[1] > 0).length, 0);
  if (!count) return empty(id, "waiting for data");
  const { figure, plot, width } = plotOf(id);
  const svg = svgEl("svg", { viewBox: `0 0 ${width} ${H}`, preserveAspectRatio: "none" });
  const all = drawn.flatMap((s) => s.points);
  const t0 = Math.min(...all.map((p) => p[0]));
  const t1 = Math.max(...all.map((p) => p[0]), t0 + 1);
  const max = fixedMax || niceMax(Math.max(...all.map((p) => p[1])));
  yAxis(svg, width, max, unit);
  const sx = (t) => M.left + ((t - t0) / (t1 - t0)) * (width - M.left - M.right);
  const sy = (v) => M.top + (H - M.top - M.bottom) * (1 - v / max);
  series.forEach((s, i) => {
    if (!s.points.length) return;
    const color = PALETTE[i % PALETTE.length];
    const d = s.points.map((p, j) => `${j ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ");
    svg.appendChild(svgEl("path", { d, fill: "none", stroke: color, "stroke-width": 2 }));
    if (s.points.length === 1) {
      svg.appendChild(svgEl("circle", { cx: sx(s.points[0][0]), cy: sy(s.points[0][1]), r: 3, fill: color }));
    }
  });
  svg.appendChild(svgEl("text", { x: M.left, y: H - 8 }, clock(t0) + " UTC"));
  svg.appendChild(svgEl("text", { x: width - M.right, y: H - 8, "text-anchor": "end" }, clock(t1)));
  plot.appendChild(svg);
  legend(plot, series.map((s) => s.name));
  figure.dataset.points = String(count);
}

// ---------------------------------------------------------------------------- the data
function latestWithCells(metric) {
  if (!metric) return null;
  for (let i = metric.windows.length - 1; i >= 0; i--) {
    if (metric.windows[i].top.length) return metric.windows[i];
  }
  return null;
}

function shortUrl(url) {
  const match = /^[a-z]+:\/\/[^/]+(\/.*)?$/i.exec(url);
  return match ? match[1] || "/" : url;
}

function windowNote(window, k) {
  if (!window) return "";
  return `window ${hhmm(window.start)}–${hhmm(window.end)} UTC · ${window.released_cells} cells released` +
    (k ? ` · k = ${k}` : "");
}

function renderAggregates(agg) {
  const metrics = agg.metrics || {};
  const seconds = agg.window_seconds;
  document.getElementById("window-note").textContent = seconds
    ? `${seconds >= 60 ? seconds / 60 + "-minute" : seconds + "-second"} windows, UTC · ${agg.records} records read · policy ${agg.policy_version || "?"}`
    : "no window released yet";

  // The live view: page views by page where windows are short (exact mode, as the demo runs),
  // else the per-minute total (dp mode releases pages hourly and daily).
  const pv = metrics.page_views && metrics.page_views.window_seconds <= 60
    ? metrics.page_views : (metrics.page_views_per_minute || metrics.page_views);
  stackedBars("chart-page-views", pv ? pv.windows.map((w) => ({
    label: hhmm(w.start), values: [w.cells_sum, typeof w.other === "number" ? w.other : 0],
  })) : [], ["released cells", "other"]);

  const visitors = latestWithCells(metrics.visitors);
  document.getElementById("visitors-note").textContent = windowNote(visitors, metrics.visitors && metrics.visitors.k);
  hbars("chart-visitors", visitors ? visitors.top.map((c) => ({ label: c.label, value: c.value })) : [], "");

  const searches = latestWithCells(metrics.searches);
  document.getElementById("searches-note").textContent = windowNote(searches, metrics.searches && metrics.searches.k);
  hbars("chart-searches", searches ? searches.top.map((c) => ({
    label: c.label, value: c.value, title: `“${c.label}”: ${c.value} searches by ${c.subjects} people`,
  })) : [], "");

  const top = latestWithCells(metrics.time_on_page);
  document.getElementById("top-note").textContent = windowNote(top, metrics.time_on_page && metrics.time_on_page.k);
  hbars("chart-time-on-page", top ? top.top.map((c) => {
    const v = c.value || {};
    const median = v.p50 !== null && v.p50 !== undefined ? v.p50 : v.mean;
    return {
      label: shortUrl(c.label), value: (median || 0) / 1000, marker: v.p90 ? v.p90 / 1000 : null,
      title: `${c.label}: ${v.count} page leaves, mean ${fmt((v.mean || 0) / 1000)} s, p50 ${fmt((v.p50 || 0) / 1000)} s, p90 ${fmt((v.p90 || 0) / 1000)} s`,
    };
  }) : [], " s", "90th percentile");
}

function reasonSeries(rates, field) {
  const reasons = new Set();
  rates.forEach((r) => Object.keys(r[field] || {}).forEach((k) => reasons.add(k)));
  return [...reasons].sort().map((reason) => ({
    name: reason, points: rates.map((r) => [r.t, (r[field] || {})[reason] || 0]),
  }));
}

function sum(values) { return Object.values(values || {}).reduce((a, v) => a + v, 0); }

function renderPipeline(pipeline) {
  const rates = pipeline.rates || [];
  lines("chart-throughput", [
    { name: "in", points: rates.map((r) => [r.t, r.in]) },
    { name: "out (anonymized)", points: rates.map((r) => [r.t, r.out]) },
    { name: "dropped", points: rates.map((r) => [r.t, sum(r.dropped)]) },
    { name: "dead-lettered", points: rates.map((r) => [r.t, sum(r.deadlettered)]) },
  ], "/s");
  lines("chart-drops", reasonSeries(rates, "dropped"), "/s");
  lines("chart-deadletters", reasonSeries(rates, "deadlettered"), "/s");
  lines("chart-suppression", [{
    name: "suppressed share",
    points: rates.filter((r) => r.suppressed_share !== null).map((r) => [r.t, 100 * r.suppressed_share]),
  }], "%", 100, true);

  const workers = document.getElementById("workers");
  workers.replaceChildren(...(pipeline.workers || []).map((w) => {
    const ok = w.up && w.ready && w.alive;
    const chip = htmlEl("span", "chip " + (ok ? "ok" : "bad"));
    chip.appendChild(htmlEl("b", "", w.stage || w.url));
    chip.appendChild(document.createTextNode(
      !w.up ? " not answering" : ` ${w.ready ? "ready" : "not ready"}${w.alive ? "" : ", unhealthy"} · lag ${w.lag === null ? "?" : w.lag}`));
    return chip;
  }));
  const t = pipeline.totals || {};
  const chips = [
    ["in", t.consumed], ["anonymized", t.forwarded], ["dropped", sum(t.dropped)],
    ["dead-lettered", sum(t.deadlettered)], ["cells released", t.cells_released],
    ["cells suppressed", sum(t.suppressed)], ["records published", t.aggregates_released],
  ];
  document.getElementById("totals").replaceChildren(...chips.map(([name, value]) => {
    const chip = htmlEl("span", "chip");
    chip.appendChild(htmlEl("b", "", fmt(value || 0)));
    chip.appendChild(document.createTextNode(" " + name));
    return chip;
  }));
}

let updates = 0;

async function poll() {
  const status = document.getElementById("status");
  try {
    const response = await fetch("/dashboard/data.json", { cache: "no-store" });
    if (!response.ok) throw new Error("HTTP " + response.status);
    const data = await response.json();
    renderAggregates(data.aggregates || {});
    renderPipeline(data.pipeline || {});
    updates += 1;
    const follower = data.follower || {};
    status.className = "status" + (follower.error ? " stale" : "");
    status.textContent = `updated ${clock(data.generated_at)} UTC` +
      (follower.error ? ` · aggregate reader retrying (${follower.error})` : "");
    const charts = [...document.querySelectorAll("figure.chart")];
    const ready = charts.every((f) => Number(f.dataset.points) > 0);
    document.body.dataset.ready = String(ready);
    document.body.dataset.updates = String(updates);
    window.dashboardReady = ready;
  } catch (error) {
    status.className = "status stale";
    status.textContent = "cannot reach the dashboard: " + error.message;
  }
  setTimeout(poll, POLL_MS);
}

poll();
