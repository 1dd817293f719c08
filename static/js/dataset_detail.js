// Dataset page: live progress over the notifications socket while the file is
// processed (reload when it is done), and paged rows from the REST API.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (live) {
    var id = Number(live.getAttribute("data-dataset"));
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var socket = null;
    var poll = null;
    var connect = function () {
      socket = new WebSocket(scheme + window.location.host + "/ws/notifications/");
      socket.onmessage = function (message) {
        var event = JSON.parse(message.data);
        if (event.id !== id) { return; }
        if (event.event === "dataset.progress") {
          document.getElementById("processed").textContent = event.processed_rows;
        } else if (event.event === "dataset.ready" || event.event === "dataset.failed") {
          window.location.reload();
        }
      };
      socket.onclose = function () { setTimeout(connect, 2000); };
    };
    connect();
    // The socket may open after the work finished: check the row once a while.
    poll = setInterval(function () {
      fetch("/api/datasets/" + id + "/", { credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (body) {
          if (body.status === "ready" || body.status === "failed") { clearInterval(poll); window.location.reload(); }
        });
    }, 3000);
  }

  var rows = document.getElementById("rows");
  if (rows) {
    var url = rows.getAttribute("data-url");
    var total = Number(rows.getAttribute("data-total"));
    var limit = 20;
    var offset = 0;
    var load = function () {
      fetch(url + "?offset=" + offset + "&limit=" + limit, { credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (body) {
          document.getElementById("rows-body").textContent = body.rows.map(function (r) { return JSON.stringify(r); }).join("\n");
          document.getElementById("rows-range").textContent =
            "rows " + (total ? offset + 1 : 0) + "–" + Math.min(offset + limit, total) + " of " + total;
        });
    };
    rows.addEventListener("click", function (event) {
      var step = event.target.getAttribute("data-page");
      if (!step) { return; }
      offset = Math.max(0, Math.min(offset + Number(step) * limit, Math.max(0, total - 1)));
      offset -= offset % limit;
      load();
    });
    load();
  }
})();
