// Live deployment status badges, on the list and the detail page. The health
// beat announces a changed status over the per-user notifications socket as
// {"event": "deployment.status", "id", "status", "detail", "checked_at"};
// every element marked data-status-for="<id>" (and its data-checked-for /
// data-detail-for companions) follows it without a reload.
// window.deploymentStatus(id, status, detail) is the one way to repaint, also
// used by the detail page's "Check now".
(function () {
  "use strict";
  var LABELS = { healthy: "Healthy", unhealthy: "Unhealthy", unknown: "Unknown" };

  function each(selector, callback) {
    Array.prototype.forEach.call(document.querySelectorAll(selector), callback);
  }

  window.deploymentStatus = function (id, status, detail) {
    each('[data-status-for="' + id + '"]', function (badge) {
      badge.className = "badge status-" + status;
      badge.textContent = LABELS[status] || status;
      badge.title = detail || "";
    });
    each('[data-checked-for="' + id + '"]', function (el) { el.textContent = "checked just now"; });
    each('[data-detail-for="' + id + '"]', function (el) { el.textContent = detail || ""; });
  };

  if (!document.querySelector("[data-status-for]")) { return; }
  var announcer = document.getElementById("status-announcer");
  var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";

  function announce(event) {
    // The list's rows change silently for sighted users; say it once for
    // screen readers too (the detail page has its own live region).
    var row = document.querySelector('tr[data-deployment="' + event.id + '"]');
    if (announcer && row) {
      announcer.textContent = row.getAttribute("data-name") + " is now " + (LABELS[event.status] || event.status).toLowerCase() +
        (event.detail ? ": " + event.detail : "");
    }
  }

  function connect() {
    var socket = new WebSocket(scheme + window.location.host + "/ws/notifications/");
    socket.onopen = function () { document.body.setAttribute("data-live", "open"); };
    socket.onmessage = function (message) {
      var event = JSON.parse(message.data);
      if (event.event !== "deployment.status") { return; }
      window.deploymentStatus(event.id, event.status, event.detail);
      announce(event);
    };
    socket.onclose = function (event) {
      document.body.removeAttribute("data-live");
      if (event.code !== 4401) { setTimeout(connect, 2000); }  // 4401: logged out, stop
    };
  }
  connect();
})();
