/* A tiny SVG chart drawer: hourly stacked bars (succeeded / failed attempts)
 * with the average latency as a line on a second axis. No dependencies; all
 * colours come from CSS classes, so it follows the light/dark theme. */
(function () {
  "use strict";

  var NS = "http://www.w3.org/2000/svg";

  function el(name, attrs, parent) {
    var node = document.createElementNS(NS, name);
    Object.keys(attrs || {}).forEach(function (key) {
      node.setAttribute(key, String(attrs[key]));
    });
    if (parent) parent.appendChild(node);
    return node;
  }

  /* A round tick step (1, 2, 5 × 10^n, at least `min`) so that `ticks` steps reach `value`. */
  function niceStep(value, ticks, min) {
    var raw = Math.max(value / ticks, min);
    var pow = Math.pow(10, Math.floor(Math.log10(raw)));
    var steps = [1, 2, 5, 10];
    for (var i = 0; i < steps.length; i++) {
      if (raw <= steps[i] * pow) return steps[i] * pow;
    }
    return 10 * pow;
  }

  function fmtMs(ms) {
    if (ms >= 1000) return (ms / 1000).toFixed(ms >= 10000 ? 0 : 1) + " s";
    return Math.round(ms) + " ms";
  }

  function pad(n) {
    return n < 10 ? "0" + n : String(n);
  }

  var DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

  /**
   * buckets: [{ start: Date, succeeded: n, failed: n, avgLatencyMs: n|null }], oldest first, one per hour.
   * options: { title, description }
   */
  function draw(buckets, options) {
    options = options || {};
    var W = 1000, H = 250;
    var m = { top: 14, right: 66, bottom: 30, left: 44 };
    var iw = W - m.left - m.right, ih = H - m.top - m.bottom;
    var n = Math.max(buckets.length, 1);

    var svg = el("svg", {
      viewBox: "0 0 " + W + " " + H,
      class: "chart",
      role: "img",
      "aria-labelledby": "chart-title chart-desc",
      preserveAspectRatio: "xMidYMid meet"
    });
    el("title", { id: "chart-title" }, svg).textContent = options.title || "Attempts per hour";
    el("desc", { id: "chart-desc" }, svg).textContent = options.description || "";

    var ticks = 4;
    var countStep = niceStep(Math.max.apply(null, buckets.map(function (b) { return b.succeeded + b.failed; }).concat([0])), ticks, 1);
    var latencies = buckets.map(function (b) { return b.avgLatencyMs; }).filter(function (v) { return v != null; });
    var latencyStep = niceStep(Math.max.apply(null, latencies.concat([0])), ticks, 1);
    var maxCount = countStep * ticks;
    var maxLatency = latencyStep * ticks;

    var plot = el("g", { transform: "translate(" + m.left + "," + m.top + ")" }, svg);

    // Grid and axes.
    var grid = el("g", { class: "grid" }, plot);
    var axis = el("g", { class: "axis" }, plot);
    for (var t = 0; t <= ticks; t++) {
      var y = ih - (ih * t) / ticks;
      el("line", { x1: 0, x2: iw, y1: y, y2: y }, grid);
      var left = el("text", { x: -8, y: y + 4, "text-anchor": "end" }, axis);
      left.textContent = String(countStep * t);
      var right = el("text", { x: iw + 8, y: y + 4, "text-anchor": "start" }, axis);
      right.textContent = fmtMs(latencyStep * t);
    }

    // Bars.
    var slot = iw / n;
    var bw = Math.max(1, Math.min(30, slot * 0.72));
    var bars = el("g", {}, plot);
    buckets.forEach(function (b, i) {
      var x = i * slot + (slot - bw) / 2;
      var okH = (ih * b.succeeded) / maxCount;
      var badH = (ih * b.failed) / maxCount;
      var label = b.start.toISOString().slice(0, 13).replace("T", " ") + ":00 UTC — " +
        b.succeeded + " succeeded, " + b.failed + " failed" +
        (b.avgLatencyMs != null ? ", avg " + fmtMs(b.avgLatencyMs) : "");
      if (okH > 0) {
        var ok = el("rect", { class: "bar-ok", x: x, y: ih - okH, width: bw, height: okH, rx: 1.5 }, bars);
        el("title", {}, ok).textContent = label;
      }
      if (badH > 0) {
        var bad = el("rect", { class: "bar-bad", x: x, y: ih - okH - badH, width: bw, height: badH, rx: 1.5 }, bars);
        el("title", {}, bad).textContent = label;
      }
    });

    // Latency line (broken where an hour had no attempts).
    var d = "";
    var pen = false;
    buckets.forEach(function (b, i) {
      if (b.avgLatencyMs == null) {
        pen = false;
        return;
      }
      var x = i * slot + slot / 2;
      var y = ih - (ih * b.avgLatencyMs) / maxLatency;
      d += (pen ? "L" : "M") + x.toFixed(1) + " " + y.toFixed(1) + " ";
      pen = true;
      var dot = el("circle", { class: "latency-dot", cx: x, cy: y, r: n > 48 ? 2 : 3.5 }, plot);
      el("title", {}, dot).textContent = "avg latency " + fmtMs(b.avgLatencyMs);
    });
    if (d) el("path", { class: "latency", d: d.trim() }, plot);

    // Time labels: every 3 h for a day, every day for a week.
    var every = n <= 24 ? 3 : n <= 48 ? 6 : 24;
    buckets.forEach(function (b, i) {
      var hour = b.start.getHours();
      if (hour % every !== 0 && !(every === 24 && hour === 0)) return;
      if (every === 24 && hour !== 0) return;
      var x = i * slot + slot / 2;
      var text = el("text", { x: x, y: ih + 18, "text-anchor": "middle" }, axis);
      text.textContent = every === 24 ? DAYS[b.start.getDay()] + " " + b.start.getDate() : pad(hour) + ":00";
    });

    return svg;
  }

  window.SkyhookChart = { draw: draw, formatMs: fmtMs };
})();
