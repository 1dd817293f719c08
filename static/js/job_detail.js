// The live job page. On load it opens /ws/jobs/<id>/ (the job's pushes,
// buffered), reads the past events from /api/jobs/<id>/events?after=0, then
// applies the buffered and live ones; every event is applied once (by seq).
// Charts are inline SVG drawn from the `metrics` events, no libraries.
(function () {
  "use strict";
  var root = document.getElementById("job-page");
  if (!root) { return; }
  var LABELS = { queued: "Queued", running: "Running", succeeded: "Succeeded", failed: "Failed", cancelled: "Cancelled" };
  var TERMINAL = { succeeded: true, failed: true, cancelled: true };
  var jobId = root.getAttribute("data-job");
  var seen = {};
  var points = { loss: [], lr: [] };
  // The stage's own charts (rm accuracy, PPO reward and KL, …): data-metric boxes.
  var extraCharts = Array.prototype.slice.call(document.querySelectorAll("[data-metric]"));
  extraCharts.forEach(function (box) { points[box.getAttribute("data-metric")] = []; });
  var loaded = false;
  var buffered = [];
  var logTimer = null;

  function $(id) { return document.getElementById(id); }

  function fmt(value) {
    if (value === null || value === undefined) { return "—"; }
    if (Math.abs(value) >= 1000 || value === Math.round(value)) { return String(Math.round(value * 1000) / 1000); }
    return Math.abs(value) < 0.001 ? value.toExponential(2) : value.toPrecision(4);
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined || !isFinite(seconds)) { return "—"; }
    seconds = Math.max(0, Math.round(seconds));
    var h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    return (h ? h + " h " : "") + (h || m ? m + " min " : "") + s + " s";
  }

  // A line chart of [[x, y], …] as inline SVG in `box`.
  function drawChart(box, data, label) {
    if (!data.length) { box.textContent = box.getAttribute("data-empty"); return; }
    var W = 480, H = 180, L = 56, R = 10, T = 10, B = 26;
    var xs = data.map(function (p) { return p[0]; }), ys = data.map(function (p) { return p[1]; });
    var x0 = Math.min.apply(null, xs), x1 = Math.max.apply(null, xs);
    var y0 = Math.min.apply(null, ys), y1 = Math.max.apply(null, ys);
    if (x1 === x0) { x1 = x0 + 1; }
    if (y1 === y0) { y1 = y0 + (Math.abs(y0) || 1) * 0.1; y0 = y0 - (Math.abs(y0) || 1) * 0.1; }
    function px(x) { return L + (x - x0) / (x1 - x0) * (W - L - R); }
    function py(y) { return T + (1 - (y - y0) / (y1 - y0)) * (H - T - B); }
    var path = data.map(function (p, i) { return (i ? "L" : "M") + px(p[0]).toFixed(1) + " " + py(p[1]).toFixed(1); }).join(" ");
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", label + ": " + data.length + " points, last " + fmt(ys[ys.length - 1]) + " at step " + xs[xs.length - 1]);
    function add(tag, attrs, text) {
      var el = document.createElementNS(ns, tag);
      Object.keys(attrs).forEach(function (k) { el.setAttribute(k, attrs[k]); });
      if (text !== undefined) { el.textContent = text; }
      svg.appendChild(el);
      return el;
    }
    add("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, "class": "axis" });
    add("line", { x1: L, y1: T, x2: L, y2: H - B, "class": "axis" });
    add("text", { x: L - 4, y: T + 8, "text-anchor": "end", "class": "tick" }, fmt(y1));
    add("text", { x: L - 4, y: H - B, "text-anchor": "end", "class": "tick" }, fmt(y0));
    add("text", { x: L, y: H - 8, "class": "tick" }, String(x0));
    add("text", { x: W - R, y: H - 8, "text-anchor": "end", "class": "tick" }, "step " + x1);
    add("path", { d: path, "class": "line" });
    box.textContent = "";
    box.appendChild(svg);
  }

  var chartPending = false;
  function redraw() {
    if (chartPending) { return; }
    chartPending = true;
    window.requestAnimationFrame(function () {
      chartPending = false;
      drawChart($("chart-loss"), points.loss, "Loss");
      drawChart($("chart-lr"), points.lr, "Learning rate");
      extraCharts.forEach(function (box) {
        drawChart(box, points[box.getAttribute("data-metric")], box.getAttribute("data-title"));
      });
    });
  }

  function setProgress(step, total) {
    var bar = $("job-progress");
    if (total) {
      bar.querySelector(".progress-fill").style.width = Math.min(100, 100 * step / total) + "%";
      bar.setAttribute("aria-valuemax", String(total));
    }
    bar.setAttribute("aria-valuenow", String(step));
    $("job-steps").textContent = step + " / " + (total || "—");
  }

  function setStatus(status) {
    var badge = $("job-status");
    if (badge.getAttribute("data-status") !== status) {
      var announcer = $("status-announcer");
      if (announcer) { announcer.textContent = "The job is now " + (LABELS[status] || status).toLowerCase(); }
    }
    badge.className = "badge status-" + status;
    badge.textContent = LABELS[status] || status;
    badge.setAttribute("data-status", status);
    $("cancel-button").hidden = !!TERMINAL[status];
    $("resume-button").hidden = !(status === "failed" || status === "cancelled");
    if (TERMINAL[status]) { $("job-eta").textContent = "—"; }
  }

  function addCheckpoint(data) {
    var list = $("job-checkpoints");
    if (list.querySelector('li[data-step="' + data.step + '"]')) { return; }
    var li = document.createElement("li");
    li.setAttribute("data-step", data.step);
    li.textContent = "step " + data.step + (data.path ? " — " + data.path : "");
    list.appendChild(li);
    $("no-checkpoints").hidden = true;
  }

  // One stored event {seq, attempt, kind, data}.
  function applyEvent(event) {
    if (seen[event.seq]) { return; }
    seen[event.seq] = true;
    var data = event.data || {};
    if (event.kind === "metrics") {
      if (typeof data.loss === "number") { points.loss.push([data.step, data.loss]); $("job-loss").textContent = fmt(data.loss); }
      if (typeof data.lr === "number") { points.lr.push([data.step, data.lr]); }
      extraCharts.forEach(function (box) {
        var key = box.getAttribute("data-metric");
        if (typeof data[key] === "number") { points[key].push([data.step, data[key]]); }
      });
      if (typeof data.tokens_per_s === "number") { $("job-throughput").textContent = Math.round(data.tokens_per_s) + " tokens/s"; }
      if (data.eta_s !== undefined) { $("job-eta").textContent = duration(data.eta_s); }
      setProgress(data.step, Number($("job-progress").getAttribute("aria-valuemax")) || null);
      redraw();
    } else if (event.kind === "start") {
      if (data.total_steps) { setProgress(data.resumed_from_step || 0, data.total_steps); }
      // A resumed attempt re-logs from its checkpoint: keep the curve monotone.
      var from = data.resumed_from_step || 0;
      Object.keys(points).forEach(function (key) {
        points[key] = points[key].filter(function (p) { return p[0] <= from; });
      });
      redraw();
    } else if (event.kind === "eval") {
      if (typeof data.eval_loss === "number") { $("job-eval-loss").textContent = fmt(data.eval_loss); }
    } else if (event.kind === "checkpoint") {
      addCheckpoint(data);
    } else if (event.kind === "status") {
      setStatus(data.status);
      $("job-attempt").textContent = event.attempt;
      if (data.message) { $("job-message").textContent = data.message; }
    } else if (event.kind === "note" || event.kind === "cancelled") {
      if (data.message) { $("job-message").textContent = data.message; }
    } else if (event.kind === "error") {
      if (data.message) { $("job-message").textContent = data.message; }
    }
  }

  // One push of the job's socket.
  function applyPush(push) {
    if (push.event === "job.progress") {
      (push.events || []).forEach(applyEvent);
      setProgress(push.step, push.total_steps);
      if (push.status) { setStatus(push.status); }
      scheduleLog();
    } else if (push.event === "job.status") {
      if (push.seq && seen[push.seq]) { return; }
      if (push.seq) { seen[push.seq] = true; }
      setStatus(push.status);
      $("job-attempt").textContent = push.attempt;
      if (push.message) { $("job-message").textContent = push.message; }
      var error = $("job-error");
      error.textContent = push.error || "";
      error.hidden = !push.error;
      if (push.output_artifact) {
        var link = $("job-output-link");
        link.href = root.getAttribute("data-artifact-url").replace("/0/", "/" + push.output_artifact + "/");
        $("job-output").hidden = false;
      }
      if (TERMINAL[push.status]) { $("job-finished").textContent = "just now"; }
      scheduleLog();
    }
  }

  function loadLog() {
    logTimer = null;
    fetch(root.getAttribute("data-log-url") + "?lines=40", { credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.text() : ""; })
      .then(function (text) { $("job-log").textContent = text || "(no log yet)"; });
  }
  function scheduleLog() { if (!logTimer) { logTimer = setTimeout(loadLog, 1500); } }

  function loadEvents(after) {
    return fetch(root.getAttribute("data-events-url") + "?after=" + after + "&limit=1000", { credentials: "same-origin" })
      .then(function (response) { return response.json(); })
      .then(function (page) {
        page.data.forEach(applyEvent);
        if (page.has_more) { return loadEvents(page.last_seq); }
        return null;
      });
  }

  function post(button) {
    $("action-error").hidden = true;
    button.disabled = true;
    fetch(button.getAttribute("data-url"), {
      method: "POST", credentials: "same-origin", headers: { "X-CSRFToken": window.csrfToken() },
    }).then(function (response) {
      return response.json().then(function (body) {
        if (!response.ok) { throw new Error((body.error && body.error.message) || response.statusText); }
        setStatus(body.status);
        if (body.cancel_requested && body.status === "running") { $("job-message").textContent = "Cancel requested: the training saves a checkpoint and stops."; }
      });
    }).catch(function (error) {
      $("action-error").textContent = error.message;
      $("action-error").hidden = false;
    }).then(function () { button.disabled = false; });
  }
  $("cancel-button").addEventListener("click", function () { post(this); });
  $("resume-button").addEventListener("click", function () { post(this); });

  var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
  function connect() {
    var socket = new WebSocket(scheme + window.location.host + "/ws/jobs/" + jobId + "/");
    socket.onopen = function () {
      document.body.setAttribute("data-live", "open");
      // Past events after the socket is open, so nothing falls in between.
      loadEvents(0).then(function () {
        loaded = true;
        buffered.splice(0).forEach(applyPush);
        redraw();
      });
    };
    socket.onmessage = function (message) {
      var push = JSON.parse(message.data);
      if (loaded) { applyPush(push); } else { buffered.push(push); }
    };
    socket.onclose = function (event) {
      document.body.removeAttribute("data-live");
      loaded = false;
      if (event.code !== 4401 && event.code !== 4404) { setTimeout(connect, 2000); }
    };
  }
  redraw();
  loadLog();
  connect();
})();
