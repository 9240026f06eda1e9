// llmchain report page: draws every chart from the embedded aggregates and redraws on filter.
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("report-data").textContent);
  var IDX = {};
  D.counters.forEach(function (name, i) { IDX[name] = i; });
  var W = D.meta.bucket_ms;  // the display bucket width, set by select()
  var state = { from: null, to: null, model: "", rid: "" };
  var COLORS = { ok: "#2e9d5b", cache: "#3b7dd8", retried: "#e0a100", failed: "#d0453b", cancelled: "#8a93a3" };
  var PLOT_CONFIG = { displaylogo: false, responsive: true };
  var TIME_CHARTS = ["timeline", "latency", "attempts", "cache", "repairs", "cost_time", "tokens_time"];

  function pad(n, w) { n = String(n); while (n.length < (w || 2)) n = "0" + n; return n; }
  function fmtTime(ms, withMs) {
    var d = new Date(ms);
    var s = d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) + " " +
      pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + ":" + pad(d.getUTCSeconds());
    return withMs ? s + "." + pad(d.getUTCMilliseconds(), 3) : s;
  }
  function parseTime(text) {
    var m = /^(\d{4})-(\d\d)-(\d\d)[ T](\d\d):(\d\d)(?::(\d\d)(?:[.,](\d{1,3}))?)?$/.exec(text.trim());
    if (!m) return null;
    return Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +(m[6] || 0), +((m[7] || "0") + "00").slice(0, 3));
  }
  function fmtMs(v) { return v == null ? "-" : v >= 10 ? Math.round(v).toLocaleString() + " ms" : v.toFixed(1) + " ms"; }
  function esc(s) {
    return String(s).replace(/[&<>"]/g, function (c) { return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]; });
  }
  function binValue(i) { return Math.pow(D.gamma, i + 0.5); }
  function quantile(hist, q) {  // hist: {bin: count}; nearest rank, as the Python side
    var keys = Object.keys(hist).map(Number).sort(function (a, b) { return a - b; });
    var total = 0;
    keys.forEach(function (k) { total += hist[k]; });
    if (!total) return null;
    var rank = Math.max(1, Math.ceil(q * total)), seen = 0;
    for (var i = 0; i < keys.length; i++) { seen += hist[keys[i]]; if (seen >= rank) return binValue(keys[i]); }
    return binValue(keys[keys.length - 1]);
  }
  function inWindow(t) { return (state.from == null || t >= state.from) && (state.to == null || t < state.to); }
  function modelOk(m) { return !state.model || D.models[m] === state.model; }

  // Sum the selected buckets per time (all selected models together) and per model.
  // Display buckets: the stored ones, merged so that at most MAX_BARS fit the window shown
  // (zooming in shows finer buckets, down to the width the log was read at).
  var MAX_BARS = 240, FIRST = D.buckets.length ? D.buckets[0][0] : 0;
  var LAST = D.buckets.length ? D.buckets[D.buckets.length - 1][0] + D.meta.bucket_ms : 0;
  function displayWidth() {
    var from = state.from == null ? FIRST : state.from, to = state.to == null ? LAST : state.to;
    var span = Math.max(to - from, D.meta.bucket_ms);
    for (var i = 0; i < D.widths.length; i++) {
      if (D.widths[i] >= D.meta.bucket_ms && span / D.widths[i] <= MAX_BARS) return D.widths[i];
    }
    return D.widths[D.widths.length - 1];
  }
  function widthLabel(ms) {
    return ms < 1000 ? ms + " ms" : ms < 60000 ? ms / 1000 + " s" : ms < 3600000 ? ms / 60000 + " min" : ms / 3600000 + " h";
  }

  function select() {
    var byTime = {}, byModel = {}, total = D.counters.map(function () { return 0; }), hist = {}, kinds = {};
    W = displayWidth();
    D.buckets.forEach(function (b) {
      var m = b[1], counts = b[2];
      if (!inWindow(b[0]) || !modelOk(m)) return;
      var t = Math.floor(b[0] / W) * W;
      var slot = byTime[t] || (byTime[t] = { counts: D.counters.map(function () { return 0; }), hist: {}, perModel: {}, tokensPerModel: {} });
      for (var i = 0; i < counts.length; i++) { slot.counts[i] += counts[i]; total[i] += counts[i]; }
      b[3].forEach(function (p) { slot.hist[p[0]] = (slot.hist[p[0]] || 0) + p[1]; hist[p[0]] = (hist[p[0]] || 0) + p[1]; });
      b[4].forEach(function (p) { kinds[p[0]] = (kinds[p[0]] || 0) + p[1]; });
      slot.perModel[m] = (slot.perModel[m] || 0) + counts[IDX.cost_usd];
      slot.tokensPerModel[m] = (slot.tokensPerModel[m] || 0) + counts[IDX.tokens_in] + counts[IDX.tokens_out];
      var pm = byModel[m] || (byModel[m] = D.counters.map(function () { return 0; }));
      for (var j = 0; j < counts.length; j++) pm[j] += counts[j];
    });
    var times = Object.keys(byTime).map(Number).sort(function (a, b) { return a - b; });
    return { times: times, byTime: byTime, byModel: byModel, total: total, hist: hist, kinds: kinds };
  }

  function xs(sel) { return sel.times.map(function (t) { return t + W / 2; }); }
  function series(sel, name) { return sel.times.map(function (t) { return sel.byTime[t].counts[IDX[name]]; }); }
  function layout(extra) {
    var base = { margin: { l: 50, r: 50, t: 10, b: 40 }, legend: { orientation: "h", y: -0.18 },
                 xaxis: { type: "date" }, hovermode: "x unified", barmode: "stack", bargap: 0.1 };
    if (state.from != null && state.to != null) base.xaxis.range = [state.from, state.to];
    for (var k in extra) base[k] = extra[k];
    return base;
  }
  function bar(sel, name, label, color) {
    return { type: "bar", x: xs(sel), y: series(sel, name), name: label, width: W * 0.9, marker: { color: color } };
  }

  function figures(sel) {
    var okPlain = sel.times.map(function (t) {
      var c = sel.byTime[t].counts;
      return c[IDX.ok] - c[IDX.from_cache] - c[IDX.ok_retried];
    });
    var figs = {};
    figs.timeline = [[
      { type: "bar", x: xs(sel), y: okPlain, name: "ok", width: W * 0.9, marker: { color: COLORS.ok } },
      bar(sel, "from_cache", "ok from the cache", COLORS.cache),
      bar(sel, "ok_retried", "ok after retries", COLORS.retried),
      bar(sel, "errors", "failed", COLORS.failed),
      bar(sel, "cancelled", "cancelled", COLORS.cancelled)
    ], layout({ yaxis: { title: "calls" } })];
    var qs = [[0.5, "p50", "#3b7dd8"], [0.95, "p95", "#e0a100"], [0.99, "p99", "#d0453b"]];
    figs.latency = [qs.map(function (q) {
      return { type: "scatter", mode: sel.times.length > 60 ? "lines" : "lines+markers", x: xs(sel), name: q[1], line: { color: q[2] },
               y: sel.times.map(function (t) { return quantile(sel.byTime[t].hist, q[0]); }) };
    }), layout({ yaxis: { title: "ms", rangemode: "tozero" } })];
    // the events stacked per bucket (what happened, and how much), attempts as a line over them
    figs.attempts = [[
      bar(sel, "retries", "retries", "#e0a100"), bar(sel, "http_429", "429s", "#d0453b"),
      bar(sel, "http_5xx", "5xx", "#8e44ad"), bar(sel, "timeouts", "timeouts", "#6d2018"),
      bar(sel, "pauses", "provider pauses (429)", "#16a085"), bar(sel, "limiter_waits", "limiter waits", "#3b7dd8"),
      { type: "scatter", mode: sel.times.length > 60 ? "lines" : "markers", x: xs(sel), y: series(sel, "attempts"),
        name: "attempts", marker: { color: "#1d2430", symbol: "line-ew-open", size: 14 }, line: { color: "#6b7687", width: 1 } }
    ], layout({ yaxis: { title: "per bucket" } })];
    figs.cache = [[
      bar(sel, "cache_hits", "hits", COLORS.cache), bar(sel, "cache_misses", "misses", "#b8c2d0"),
      { type: "scatter", mode: sel.times.length > 60 ? "lines" : "lines+markers", x: xs(sel), name: "hit rate", yaxis: "y2", line: { color: "#1d2430", width: 1.5 },
        y: sel.times.map(function (t) {
          var c = sel.byTime[t].counts, n = c[IDX.cache_hits] + c[IDX.cache_misses];
          return n ? 100 * c[IDX.cache_hits] / n : null;
        }) }
    ], layout({ yaxis: { title: "lookups" }, yaxis2: { title: "hit rate %", overlaying: "y", side: "right", range: [0, 100] } })];
    figs.repairs = [[
      bar(sel, "repairs_local", "local (free)", COLORS.ok), bar(sel, "repairs_reask", "re-ask (a call)", COLORS.retried),
      bar(sel, "repairs_gave_up", "gave up", COLORS.failed)
    ], layout({ yaxis: { title: "repairs" } })];
    var models = Object.keys(sel.byModel).map(Number);
    figs.cost_time = [models.map(function (m) {
      return { type: "bar", x: xs(sel), name: D.models[m], width: W * 0.9,
               y: sel.times.map(function (t) { return sel.byTime[t].perModel[m] || 0; }) };
    }), layout({ yaxis: { title: "USD" } })];
    figs.tokens_time = [models.map(function (m) {
      return { type: "bar", x: xs(sel), name: D.models[m], width: W * 0.9,
               y: sel.times.map(function (t) { return sel.byTime[t].tokensPerModel[m] || 0; }) };
    }), layout({ yaxis: { title: "tokens (in + out)" } })];
    var names = models.map(function (m) { return D.models[m]; });
    figs.per_model = [[
      { type: "bar", x: names, y: models.map(function (m) { return sel.byModel[m][IDX.tokens_in]; }), name: "tokens in", marker: { color: "#3b7dd8" } },
      { type: "bar", x: names, y: models.map(function (m) { return sel.byModel[m][IDX.tokens_out]; }), name: "tokens out", marker: { color: "#7fb1f0" } },
      { type: "scatter", mode: "markers", x: names, y: models.map(function (m) { return sel.byModel[m][IDX.cost_usd]; }),
        name: "cost USD", yaxis: "y2", marker: { color: COLORS.failed, size: 12, symbol: "diamond" } }
    ], { margin: { l: 60, r: 60, t: 10, b: 60 }, barmode: "group", legend: { orientation: "h", y: -0.25 },
         yaxis: { title: "tokens" }, yaxis2: { title: "USD", overlaying: "y", side: "right", rangemode: "tozero" } }];
    var kinds = Object.keys(sel.kinds).map(Number).sort(function (a, b) { return sel.kinds[b] - sel.kinds[a]; }).slice(0, 12);
    figs.errors = [[{ type: "bar", orientation: "h", marker: { color: COLORS.failed },
                      y: kinds.map(function (k) { return D.kinds[k]; }).reverse(),
                      x: kinds.map(function (k) { return sel.kinds[k]; }).reverse() }],
                   { margin: { l: 300, r: 20, t: 10, b: 40 }, xaxis: { title: "failed calls" }, yaxis: { automargin: true } }];
    return figs;
  }

  function cards(sel) {
    var t = sel.total, c = function (n) { return t[IDX[n]]; };
    var lookups = c("cache_hits") + c("cache_misses");
    var items = [
      ["calls", c("calls").toLocaleString()], ["failed", c("errors").toLocaleString(), c("errors") > 0],
      ["attempts", c("attempts").toLocaleString()], ["retries", c("retries").toLocaleString(), c("retries") > 0],
      ["429s", c("http_429").toLocaleString(), c("http_429") > 0], ["5xx", c("http_5xx").toLocaleString(), c("http_5xx") > 0],
      ["timeouts", c("timeouts").toLocaleString(), c("timeouts") > 0],
      ["429 pauses", c("pauses").toLocaleString() + " (" + Math.round(c("pause_s")).toLocaleString() + " s)", c("pauses") > 0],
      ["limiter waits", c("limiter_waits").toLocaleString() + " (" + c("limiter_wait_s").toFixed(1) + " s)"],
      ["cache hits", c("cache_hits").toLocaleString() + (lookups ? " (" + Math.round(100 * c("cache_hits") / lookups) + "%)" : "")],
      ["repairs local / re-ask", c("repairs_local").toLocaleString() + " / " + c("repairs_reask").toLocaleString()],
      ["p50 / p95 / p99", [0.5, 0.95, 0.99].map(function (q) { return fmtMs(quantile(sel.hist, q)); }).join(" / ")],
      ["tokens in / out", c("tokens_in").toLocaleString() + " / " + c("tokens_out").toLocaleString()],
      ["cost", "$" + c("cost_usd").toFixed(4)]
    ];
    document.getElementById("cards").innerHTML = items.map(function (it) {
      return '<div class="card' + (it[2] ? " bad" : "") + '"><b>' + esc(it[1]) + "</b><span>" + esc(it[0]) + "</span></div>";
    }).join("");
  }

  function ridOk(rid) { return !state.rid || String(rid).indexOf(state.rid) === 0; }
  function rowOk(r) {
    return (r.time == null || inWindow(r.time)) && (!state.model || r.model === state.model) && ridOk(r.request_id);
  }
  function table(id, rows, key) {
    var seen = {}, shown = rows.filter(function (r) {
      if (!rowOk(r) || seen[r.request_id]) return false;
      seen[r.request_id] = true;
      return true;
    }).sort(function (a, b) { return (b[key] || 0) - (a[key] || 0); }).slice(0, 15);
    var head = "<tr><th>time</th><th>request id</th><th>model</th><th>outcome</th><th class=num>latency</th>" +
      "<th class=num>attempts</th><th>cache</th><th class=num>tokens in/out</th><th class=num>cost USD</th></tr>";
    document.getElementById(id).innerHTML = shown.length ? "<table>" + head + shown.map(function (r) {
      return "<tr><td>" + (r.time == null ? "?" : fmtTime(r.time, true)) + '</td><td class="rid" title="filter by this id">' +
        esc(String(r.request_id).slice(0, 12)) + "</td><td>" + esc(r.model) + "</td><td>" + esc(r.outcome) +
        "</td><td class=num>" + fmtMs(r.latency_ms) + "</td><td class=num>" + r.attempts + "</td><td>" + esc(r.cache || "-") +
        "</td><td class=num>" + (r.tokens_in == null ? "-" : r.tokens_in + " / " + r.tokens_out) + "</td><td class=num>" +
        (r.cost_usd == null ? "-" : r.cost_usd.toPrecision(3)) + "</td></tr>";
    }).join("") + "</table>" : '<p class="note">No call in the embedded tables matches the filters.</p>';
  }

  function stories(sel) {
    var kinds = Object.keys(sel.kinds).map(Number).sort(function (a, b) { return sel.kinds[b] - sel.kinds[a]; });
    var html = kinds.map(function (k, n) {
      var samples = (D.samples[k] || []).filter(rowOk);
      if (state.rid && !samples.length) return "";
      var body = samples.length ? samples.map(function (s) {
        return "<pre>" + esc(s.story) + "</pre>";
      }).join("") : '<p class="note">No sample of this kind in the selection.</p>';
      return "<details" + (n < 3 || state.rid ? " open" : "") + "><summary><b>" + sel.kinds[k].toLocaleString() + " ×</b> " +
        esc(D.kinds[k]) + (samples.length ? ' — e.g. <span class="rid">' + esc(samples[0].request_id.slice(0, 12)) + "</span>" : "") +
        "</summary>" + body + "</details>";
    }).join("");
    if (D.requested.length) {  // read with --request-id: every matching call's story, ok ones too
      html = "<p><b>Read with --request-id " + esc(D.meta.cli_filters.request_id) + ":</b></p>" +
        D.requested.map(function (s) { return "<pre>" + esc(s.story) + "</pre>"; }).join("") + html;
    }
    if (!html) {
      html = state.rid ? '<p class="note">No failed call with a request id starting "' + esc(state.rid) +
        '" among the embedded samples. For any request, run <code>llmchain report LOG --request-id ' + esc(state.rid) +
        "</code>.</p>" : '<p class="note">No failed calls in the selection.</p>';
    }
    document.getElementById("stories").innerHTML = html;
  }

  var drawn = false;
  function render() {
    var sel = select(), figs = figures(sel);
    Array.prototype.forEach.call(document.querySelectorAll(".bucket"), function (el) { el.textContent = widthLabel(W); });
    cards(sel);
    stories(sel);
    table("slowest", D.slowest, "latency_ms");
    table("costliest", D.costliest, "cost_usd");
    var jobs = Object.keys(figs).map(function (id) {
      return (drawn ? Plotly.react : Plotly.newPlot)(id, figs[id][0], figs[id][1], PLOT_CONFIG);
    });
    if (!drawn) {
      drawn = true;
      Promise.all(jobs).then(function () {
        // a chart counts as drawn when plotly put its SVG into it
        var count = Array.prototype.filter.call(document.querySelectorAll(".chart"), function (el) {
          return el.querySelector(".main-svg") !== null;
        }).length;
        document.documentElement.setAttribute("data-charts-drawn", String(count));
        TIME_CHARTS.forEach(function (id) { document.getElementById(id).on("plotly_relayout", onZoom); });
      });
    }
  }

  function onZoom(ev) {
    if (ev["xaxis.autorange"]) { setWindow(null, null); return; }
    var a = ev["xaxis.range[0]"], b = ev["xaxis.range[1]"];
    if (a === undefined && ev["xaxis.range"]) { a = ev["xaxis.range"][0]; b = ev["xaxis.range"][1]; }
    if (a === undefined) return;
    setWindow(typeof a === "number" ? a : Date.parse(String(a).replace(" ", "T") + "Z"),
              typeof b === "number" ? b : Date.parse(String(b).replace(" ", "T") + "Z"));
  }
  function setWindow(from, to) {
    state.from = from; state.to = to;
    document.getElementById("f-from").value = from == null ? "" : fmtTime(from);
    document.getElementById("f-to").value = to == null ? "" : fmtTime(to);
    render();
  }

  function init() {
    var m = D.meta;
    var filters = Object.keys(m.cli_filters).map(function (k) { return k + "=" + m.cli_filters[k]; }).join(", ");
    document.getElementById("source").textContent = m.lines.toLocaleString() + " lines from " + m.files.join(", ") +
      ": " + m.calls.toLocaleString() + " calls, " + m.debug_lines.toLocaleString() + " debug lines; " +
      m.foreign.toLocaleString() + " foreign lines skipped, " + m.truncated + " truncated, " + m.damaged + " damaged" +
      (m.unfinished ? "; " + m.unfinished + " request(s) without a summary line" : "") +
      ". " + (m.first || "?") + " → " + (m.last || "?") + ", buckets of " + m.bucket_label +
      (filters ? ". Read with " + filters : "") + ".";
    document.getElementById("slow-note").textContent = "Among the " + D.slowest.length + " slowest calls kept per model while reading.";
    document.getElementById("cost-note").textContent = "Among the " + D.costliest.length + " costliest calls kept per model while reading.";
    var select_ = document.getElementById("f-model");
    D.models.forEach(function (name) {
      var o = document.createElement("option"); o.value = name; o.textContent = name; select_.appendChild(o);
    });
    select_.addEventListener("change", function () { state.model = select_.value; render(); });
    ["f-from", "f-to"].forEach(function (id) {
      document.getElementById(id).addEventListener("change", function () {
        state.from = parseTime(document.getElementById("f-from").value);
        state.to = parseTime(document.getElementById("f-to").value);
        render();
      });
    });
    var rid = document.getElementById("f-rid");
    rid.addEventListener("input", function () { state.rid = rid.value.trim(); render(); });
    document.addEventListener("click", function (e) {
      if (e.target.classList && e.target.classList.contains("rid")) { rid.value = e.target.textContent; state.rid = rid.value; render(); }
    });
    document.getElementById("f-reset").addEventListener("click", function () {
      rid.value = ""; state.rid = ""; select_.value = ""; state.model = ""; setWindow(null, null);
    });
    render();
  }
  init();
})();
