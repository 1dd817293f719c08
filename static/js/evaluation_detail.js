// The evaluation page. While the run is not over it polls
// /api/evaluations/<id>/ every 2 s (phase, answers, judgments, failures,
// tokens, cost); the report and question table are a server-rendered
// fragment (evaluations:results) fetched again when the run ends, now and
// then while it runs, and when the question filters change. Charts are
// inline SVG drawn from the fragment's JSON, no libraries; data is only ever
// set with textContent / setAttribute.
(function () {
  "use strict";
  var root = document.getElementById("evaluation-page");
  if (!root) { return; }
  var LABELS = { queued: "Queued", running: "Running", succeeded: "Succeeded", failed: "Failed", cancelled: "Cancelled" };
  var TERMINAL = { succeeded: true, failed: true, cancelled: true };
  var POLL_MS = 2000, LIVE_REPORT_MS = 10000;
  var NS = "http://www.w3.org/2000/svg";
  var apiUrl = root.getAttribute("data-api-url");
  var resultsUrl = root.getAttribute("data-results-url");
  var status = document.getElementById("evaluation-status").getAttribute("data-status");
  var lastReportAt = Date.now(), lastJudged = null, pollTimer = null;

  function $(id) { return document.getElementById(id); }
  function fmt(value, digits) { return value === null || value === undefined ? "—" : Number(value).toFixed(digits); }

  // --- charts

  function svgBox(box, width, height, label) {
    var svg = document.createElementNS(NS, "svg");
    svg.setAttribute("viewBox", "0 0 " + width + " " + height);
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", label);
    box.textContent = "";
    box.appendChild(svg);
    return function add(tag, attrs, text) {
      var el = document.createElementNS(NS, tag);
      Object.keys(attrs).forEach(function (k) { el.setAttribute(k, attrs[k]); });
      if (text !== undefined) { el.textContent = text; }
      svg.appendChild(el);
      return el;
    };
  }

  // Grouped bars: per category, A's and B's mean score on the 0–10 scale.
  function drawMeans(box, data) {
    var cats = data.categories.filter(function (c) { return c.a_mean !== null || c.b_mean !== null; });
    if (!cats.length) { box.textContent = box.getAttribute("data-empty"); return; }
    var W = 480, H = 200, L = 30, R = 10, T = 14, B = 26;
    var slot = (W - L - R) / cats.length, bar = Math.min(40, slot * 0.35);
    function py(v) { return T + (1 - v / 10) * (H - T - B); }
    var add = svgBox(box, W, H, "Mean score per category: " + cats.map(function (c) {
      return c.name + " A " + fmt(c.a_mean, 2) + ", B " + fmt(c.b_mean, 2);
    }).join("; "));
    [0, 5, 10].forEach(function (v) {
      add("line", { x1: L, y1: py(v), x2: W - R, y2: py(v), "class": "axis" });
      add("text", { x: L - 4, y: py(v) + 4, "text-anchor": "end", "class": "tick" }, String(v));
    });
    cats.forEach(function (c, i) {
      var mid = L + slot * (i + 0.5);
      [["a", c.a_mean, mid - bar - 1], ["b", c.b_mean, mid + 1]].forEach(function (s) {
        if (s[1] === null) { return; }
        var rect = add("rect", { x: s[2].toFixed(1), y: py(s[1]).toFixed(1), width: bar.toFixed(1),
          height: (py(0) - py(s[1])).toFixed(1), "class": "bar-" + s[0], "data-bar": c.name + "-" + s[0] });
        var title = document.createElementNS(NS, "title");
        title.textContent = c.name + " " + s[0].toUpperCase() + ": " + fmt(s[1], 2);
        rect.appendChild(title);
        add("text", { x: (s[2] + bar / 2).toFixed(1), y: (py(s[1]) - 3).toFixed(1), "text-anchor": "middle", "class": "tick" }, fmt(s[1], 1));
      });
      add("text", { x: mid.toFixed(1), y: H - 8, "text-anchor": "middle", "class": "tick" }, c.name);
    });
  }

  // One stacked bar per category: A wins, ties, B wins, unparsed (share of n).
  function drawOutcomes(box, data) {
    var cats = data.categories.filter(function (c) { return c.win + c.tie + c.loss + c.unparsed > 0; });
    if (!cats.length) { box.textContent = box.getAttribute("data-empty"); return; }
    var W = 480, L = 70, R = 10, T = 6, row = 26, H = T + row * cats.length + 4;
    var add = svgBox(box, W, H, "Win, tie, loss per category: " + cats.map(function (c) {
      return c.name + " " + c.win + " A wins, " + c.tie + " ties, " + c.loss + " B wins, " + c.unparsed + " unparsed";
    }).join("; "));
    cats.forEach(function (c, i) {
      var n = c.win + c.tie + c.loss + c.unparsed, x = L, y = T + i * row;
      add("text", { x: L - 6, y: y + 15, "text-anchor": "end", "class": "tick" }, c.name);
      ["win", "tie", "loss", "unparsed"].forEach(function (key) {
        if (!c[key]) { return; }
        var w = (W - L - R) * c[key] / n;
        var rect = add("rect", { x: x.toFixed(1), y: y, width: w.toFixed(1), height: row - 6, "class": "seg-" + key, "data-seg": c.name + "-" + key });
        var title = document.createElementNS(NS, "title");
        title.textContent = c.name + " " + key + ": " + c[key] + " of " + n;
        rect.appendChild(title);
        if (w > 18) { add("text", { x: (x + w / 2).toFixed(1), y: y + 14, "text-anchor": "middle", "class": "tick" }, String(c[key])); }
        x += w;
      });
    });
  }

  function drawCharts() {
    var source = $("chart-data");
    if (!source) { return; }
    var data = JSON.parse(source.textContent);
    if ($("chart-means")) { drawMeans($("chart-means"), data); }
    drawOutcomes($("chart-outcomes"), data);
  }

  // --- the results fragment

  // The fragment is this server's own template output (autoescaped); parsed
  // into nodes and moved in, never built from API data.
  function loadResults(query) {
    return fetch(resultsUrl + (query || ""), { credentials: "same-origin" })
      .then(function (response) { if (!response.ok) { throw new Error(response.statusText); } return response.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var target = $("results");
        target.textContent = "";
        Array.prototype.slice.call(doc.body.childNodes).forEach(function (node) { target.appendChild(document.adoptNode(node)); });
        lastReportAt = Date.now();
        drawCharts();
      });
  }

  // A user reading a question or typing a filter keeps the page as it is.
  function busy() {
    var results = $("results");
    return !!results.querySelector("details[open]") || results.contains(document.activeElement);
  }

  $("results").addEventListener("submit", function (event) {
    if (event.target.id !== "question-filters") { return; }
    event.preventDefault();
    var params = new URLSearchParams(new FormData(event.target));
    Array.from(params.keys()).forEach(function (key) { if (!params.get(key)) { params.delete(key); } });
    var query = params.toString() ? "?" + params.toString() : "";
    loadResults(query).then(function () { history.replaceState(null, "", window.location.pathname + query + "#questions"); });
  });
  $("results").addEventListener("click", function (event) {
    var link = event.target.closest("a[data-filter-link]");
    if (!link) { return; }
    event.preventDefault();
    var url = new URL(link.href);
    loadResults(url.search).then(function () { history.replaceState(null, "", url.pathname + url.search + "#questions"); });
  });

  // --- progress

  function setStatus(next) {
    var badge = $("evaluation-status");
    if (badge.getAttribute("data-status") !== next) {
      $("status-announcer").textContent = "The evaluation is now " + (LABELS[next] || next).toLowerCase();
    }
    badge.className = "badge status-" + next;
    badge.textContent = LABELS[next] || next;
    badge.setAttribute("data-status", next);
    $("cancel-button").hidden = !!TERMINAL[next];
    $("resume-button").hidden = !(next === "failed" || next === "cancelled");
    status = next;
  }

  function apply(body) {
    var bar = $("evaluation-progress");
    bar.setAttribute("aria-valuemax", String(body.judgments_total));
    bar.setAttribute("aria-valuenow", String(body.judgments_done));
    bar.querySelector(".progress-fill").style.width = (body.judgments_total ? Math.min(100, 100 * body.judgments_done / body.judgments_total) : 0) + "%";
    $("stat-phase").textContent = body.phase || "—";
    $("stat-answers").textContent = body.answers_done + " / " + 2 * body.items_total;
    $("stat-judgments").textContent = body.judgments_done + " / " + body.judgments_total;
    $("stat-failures").textContent = String(body.judge_failures);
    $("stat-tokens").textContent = body.prompt_tokens + " + " + body.completion_tokens;
    $("stat-cost").textContent = "$" + Number(body.estimated_cost || 0).toFixed(4);
    $("stat-attempt").textContent = String(body.attempt);
    $("evaluation-error").textContent = body.error || "";
    $("evaluation-error").hidden = !body.error;
    var wasTerminal = !!TERMINAL[status];
    setStatus(body.status);
    if (TERMINAL[body.status]) {
      $("evaluation-finished").textContent = body.finished_at ? new Date(body.finished_at).toLocaleString() : "—";
      if (!wasTerminal) { loadResults(window.location.search); }
    } else if (body.judgments_done !== lastJudged && Date.now() - lastReportAt > LIVE_REPORT_MS && !busy()) {
      loadResults(window.location.search);
    }
    lastJudged = body.judgments_done;
  }

  function poll() {
    pollTimer = null;
    fetch(apiUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { if (!response.ok) { throw new Error(response.statusText); } return response.json(); })
      .then(function (body) { apply(body); })
      .catch(function () { /* a missed poll is retried on the next tick */ })
      .then(function () { if (!TERMINAL[status]) { schedule(); } });
  }
  function schedule() { if (!pollTimer) { pollTimer = setTimeout(poll, POLL_MS); } }

  function post(button) {
    $("action-error").hidden = true;
    button.disabled = true;
    fetch(button.getAttribute("data-url"), {
      method: "POST", credentials: "same-origin", headers: { "X-CSRFToken": window.csrfToken(), Accept: "application/json" },
    }).then(function (response) {
      return response.json().then(function (body) {
        if (!response.ok) { throw new Error((body.error && body.error.message) || response.statusText); }
        apply(body);
        if (!TERMINAL[body.status]) { schedule(); }
      });
    }).catch(function (error) {
      $("action-error").textContent = error.message;
      $("action-error").hidden = false;
    }).then(function () { button.disabled = false; });
  }
  $("cancel-button").addEventListener("click", function () { post(this); });
  $("resume-button").addEventListener("click", function () { post(this); });

  drawCharts();
  if (!TERMINAL[status]) { schedule(); }
})();
