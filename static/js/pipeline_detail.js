// The pipeline page: the stage cards follow their jobs live. The runner
// pushes each change of a job to the owner's notifications socket
// ({"event": "job.progress" | "job.status", "id", "status", "step",
// "total_steps", ...}) and pipeline changes as {"event": "pipeline.status",
// "id", "status", "error"}. A status change reloads the pipeline from
// /api/pipelines/<id>/ (output models, stop reasons); while the socket is
// down that poll runs every few seconds instead.
(function () {
  "use strict";
  var LABELS = { waiting: "Waiting", queued: "Queued", running: "Running", succeeded: "Succeeded", failed: "Failed", cancelled: "Cancelled" };
  var OPEN = { queued: true, running: true };
  var POLL_MS = 5000;
  var root = document.getElementById("pipeline-page");
  if (!root) { return; }
  var pipelineId = Number(root.getAttribute("data-pipeline"));
  var apiUrl = root.getAttribute("data-api-url");
  var announcer = document.getElementById("status-announcer");
  var cancelButton = document.getElementById("cancel-button");
  var actionError = document.getElementById("action-error");
  var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
  var socketOpen = false;
  var pollTimer = null;

  function card(jobId) { return root.querySelector('li[data-job="' + jobId + '"]'); }

  function setBadge(badge, status) {
    var label = LABELS[status] || status;
    if (badge.textContent === label) { return false; }
    badge.className = "badge status-" + status;
    badge.textContent = label;
    return true;
  }

  function setProgress(item, step, total) {
    if (!total) { return; }
    var bar = item.querySelector("[data-job-progress]");
    bar.querySelector(".progress-fill").style.width = Math.min(100, 100 * step / total) + "%";
    bar.setAttribute("aria-valuenow", String(step));
    bar.setAttribute("aria-valuemax", String(total));
    item.querySelector("[data-job-steps]").textContent = step + " / " + total;
  }

  function setPipeline(status, error) {
    var badge = document.getElementById("pipeline-status");
    if (setBadge(badge, status) && announcer) { announcer.textContent = "The pipeline is now " + badge.textContent.toLowerCase(); }
    badge.setAttribute("data-status", status);
    var box = document.getElementById("pipeline-error");
    box.textContent = error || "";
    box.hidden = !error;
    cancelButton.hidden = !OPEN[status];
  }

  function setJob(job) {
    var item = card(job.id);
    if (!item) { return; }
    setBadge(item.querySelector("[data-job-status]"), job.status);
    setProgress(item, job.step, job.total_steps);
    var error = item.querySelector("[data-job-error]");
    error.textContent = job.error || "";
    error.hidden = !job.error;
    var output = item.querySelector("[data-job-output]");
    if (job.output_artifact) {
      var link = output.querySelector("[data-job-output-link]");
      var href = root.getAttribute("data-artifact-url").replace("/0/", "/" + job.output_artifact + "/");
      if (link.getAttribute("href") !== href) { link.href = href; link.textContent = "registry model #" + job.output_artifact; }
      output.hidden = false;
    }
  }

  function refresh() {
    return fetch(apiUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) {
        if (!data) { return; }
        setPipeline(data.status, data.error);
        (data.jobs || []).forEach(setJob);
      })
      .catch(function () { /* the next poll or event tries again */ });
  }

  function poll() {
    if (pollTimer) { return; }
    pollTimer = setInterval(function () {
      if (socketOpen) { clearInterval(pollTimer); pollTimer = null; return; }
      refresh();
    }, POLL_MS);
  }

  function onEvent(event) {
    if (event.event === "pipeline.status" && event.id === pipelineId) {
      setPipeline(event.status, event.error);
      refresh();
      return;
    }
    if (event.event !== "job.progress" && event.event !== "job.status") { return; }
    var item = card(event.id);
    if (!item) { return; }
    var changed = event.status && setBadge(item.querySelector("[data-job-status]"), event.status);
    if (event.event === "job.progress") { setProgress(item, event.step, event.total_steps); }
    if (changed || event.event === "job.status") {
      if (changed && announcer) { announcer.textContent = "Stage " + event.id + " is now " + (LABELS[event.status] || event.status).toLowerCase(); }
      refresh();  // the next stage, output models, stop reasons
    }
  }

  function connect() {
    var socket;
    try { socket = new WebSocket(scheme + window.location.host + "/ws/notifications/"); }
    catch (error) { poll(); return; }
    socket.onopen = function () { socketOpen = true; document.body.setAttribute("data-live", "open"); refresh(); };
    socket.onmessage = function (message) {
      try { onEvent(JSON.parse(message.data)); } catch (error) { /* not ours */ }
    };
    socket.onclose = function (event) {
      socketOpen = false;
      document.body.removeAttribute("data-live");
      poll();
      if (event.code !== 4401) { setTimeout(connect, 2000); }  // 4401: logged out, stop
    };
  }

  function csrf() {
    var input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return window.csrfToken ? (window.csrfToken() || (input && input.value) || "") : (input ? input.value : "");
  }

  cancelButton.addEventListener("click", function () {
    if (!window.confirm("Cancel this pipeline? The running stage stops at its next step; the waiting ones never start.")) { return; }
    cancelButton.disabled = true;
    actionError.hidden = true;
    fetch(cancelButton.getAttribute("data-url"), {
      method: "POST", credentials: "same-origin", headers: { "X-CSRFToken": csrf(), Accept: "application/json" },
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (!response.ok) {
          var error = data.error || {};
          actionError.textContent = error.message || data.detail || ("Could not cancel (" + response.status + ").");
          actionError.hidden = false;
          return;
        }
        setPipeline(data.status, data.error);
        (data.jobs || []).forEach(setJob);
      });
    }).catch(function () {
      actionError.textContent = "Could not reach the server.";
      actionError.hidden = false;
    }).then(function () { cancelButton.disabled = false; });
  });

  if (typeof WebSocket === "undefined") { poll(); } else { connect(); }
})();
