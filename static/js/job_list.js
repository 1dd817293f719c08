// Live rows of the jobs list. The runner pushes every change of a job to
// the owner's notifications socket: {"event": "job.progress", "id", "status",
// "step", "total_steps", "events"} and {"event": "job.status", "id", "status",
// ...}; the row marked data-job="<id>" follows them without a reload.
(function () {
  "use strict";
  var LABELS = { queued: "Queued", running: "Running", succeeded: "Succeeded", failed: "Failed", cancelled: "Cancelled" };
  var TERMINAL = { succeeded: true, failed: true, cancelled: true };
  var table = document.getElementById("jobs");
  if (!table) { return; }
  var announcer = document.getElementById("status-announcer");
  var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";

  function update(event) {
    var row = table.querySelector('tr[data-job="' + event.id + '"]');
    if (!row) { return; }
    var badge = row.querySelector("[data-job-status]");
    if (event.status && badge.textContent !== (LABELS[event.status] || event.status)) {
      badge.className = "badge status-" + event.status;
      badge.textContent = LABELS[event.status] || event.status;
      if (event.event === "job.status" && announcer) {
        announcer.textContent = "Job " + event.id + " is now " + badge.textContent.toLowerCase();
      }
      if (TERMINAL[event.status]) { row.querySelector("[data-job-finished]").textContent = "just now"; }
    }
    if (event.event === "job.progress" && event.total_steps) {
      var bar = row.querySelector("[data-job-progress]");
      var pct = Math.min(100, 100 * event.step / event.total_steps);
      bar.querySelector(".progress-fill").style.width = pct + "%";
      bar.setAttribute("aria-valuenow", String(event.step));
      bar.setAttribute("aria-valuemax", String(event.total_steps));
      row.querySelector("[data-job-steps]").textContent = event.step + " / " + event.total_steps;
    }
  }

  function connect() {
    var socket = new WebSocket(scheme + window.location.host + "/ws/notifications/");
    socket.onopen = function () { document.body.setAttribute("data-live", "open"); };
    socket.onmessage = function (message) {
      var event = JSON.parse(message.data);
      if (event.event === "job.progress" || event.event === "job.status") { update(event); }
    };
    socket.onclose = function (event) {
      document.body.removeAttribute("data-live");
      if (event.code !== 4401) { setTimeout(connect, 2000); }  // 4401: logged out, stop
    };
  }
  connect();
})();
