// Mixture editor: pick datasets with a weight or an exact row count, preview
// the per-source counts, save.
(function () {
  "use strict";
  var form = document.getElementById("mixture-form");
  if (!form) { return; }
  var errorBox = document.getElementById("form-error");
  var token = window.csrfToken;
  function payload() {
    var components = [];
    form.querySelectorAll("tr[data-dataset]").forEach(function (row) {
      if (!row.querySelector("input[type=checkbox]").checked) { return; }
      var item = { dataset: Number(row.getAttribute("data-dataset")) };
      var count = row.querySelector(".count").value;
      if (count) { item.rows = Number(count); } else { item.weight = Number(row.querySelector(".weight").value); }
      components.push(item);
    });
    return { name: document.getElementById("id_name").value, seed: Number(document.getElementById("id_seed").value || 0), components: components };
  }
  function post(url, body) {
    return fetch(url, {
      method: "POST", credentials: "same-origin", body: JSON.stringify(body),
      headers: { "Content-Type": "application/json", "X-CSRFToken": token() },
    }).then(function (response) { return response.json().then(function (data) { return [response, data]; }); });
  }
  function fail(body, status) {
    errorBox.hidden = false;
    errorBox.textContent = body && body.error ? body.error.message : "The server answered " + status + ".";
  }
  document.getElementById("preview-button").addEventListener("click", function () {
    errorBox.hidden = true;
    post("/api/mixtures/preview/", payload()).then(function (pair) {
      if (!pair[0].ok) { fail(pair[1], pair[0].status); return; }
      var plan = document.getElementById("plan");
      plan.hidden = false;
      plan.textContent = pair[1].per_source.map(function (p) { return p.name + ": " + p.rows + " of " + p.available; }).join(" · ") +
        " — " + pair[1].rows + " rows in all";
    });
  });
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    errorBox.hidden = true;
    post("/api/mixtures/", payload()).then(function (pair) {
      if (pair[0].status === 201) { window.location.href = "/datasets/mixtures/"; } else { fail(pair[1], pair[0].status); }
    });
  });
})();
