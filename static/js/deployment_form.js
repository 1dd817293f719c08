// Deployment form: show only the fields the chosen kind uses (every field is
// visible without this script), and "Test connection", which sends the
// current fields to /api/deployments/test/ and saves nothing.
(function () {
  "use strict";
  var form = document.getElementById("deployment-form");
  if (!form) { return; }
  function field(name) { return form.elements.namedItem(name); }

  function rowOf(name) { return field(name).closest("[data-kinds]"); }
  function applies(name) { return !rowOf(name).hidden; }
  function applyKind() {
    Array.prototype.forEach.call(form.querySelectorAll("[data-kinds]"), function (row) {
      row.hidden = row.getAttribute("data-kinds").split(" ").indexOf(field("kind").value) === -1;
    });
  }
  field("kind").addEventListener("change", applyKind);
  applyKind();

  var button = document.getElementById("test-connection");
  var result = document.getElementById("test-result");
  button.hidden = false;

  // ok: true (green), false (red) or null (neutral, while waiting).
  function say(ok, message) {
    result.className = "test-result" + (ok === true ? " ok" : ok === false ? " error-box" : "");
    result.textContent = message;
  }
  function text(name) { return applies(name) ? field(name).value.trim() : ""; }

  // The same JSON as the REST API's create call; fields hidden for the kind
  // are sent blank, as the page's own submit stores them.
  function payload() {
    var params = text("default_params");
    var body = {
      // The name plays no part in a connection: a placeholder spares a
      // "name is blank" error while the form is being filled in.
      name: field("name").value.trim() || "connection-test",
      kind: field("kind").value,
      endpoint_url: text("endpoint_url"),
      server_model: text("server_model"),
      artifact: field("artifact").value ? Number(field("artifact").value) : null,
      model_path: text("model_path"),
      default_params: params ? JSON.parse(params) : {},  // blank: no defaults
      options: {},
      upstream_api_key: text("upstream_api_key"),
      shared: field("shared").checked,
      enabled: field("enabled").checked,
      description: field("description").value,
    };
    if (body.default_params === null) { body.default_params = {}; }  // null: no defaults, as on submit
    if (applies("prompt_template")) { body.prompt_template = field("prompt_template").value.replace(/\r\n/g, "\n"); }
    if (body.kind === "triton") {
      body.options = { protocol: field("protocol").value, transport: field("transport").value, stream: field("stream").checked };
    }
    return body;
  }

  button.addEventListener("click", function () {
    var body;
    try {
      body = payload();
    } catch (error) {
      say(false, "Default generation parameters: not valid JSON (" + error.message + ").");
      return;
    }
    button.disabled = true;
    say(null, "Testing…");
    fetch("/api/deployments/test/", {
      method: "POST", credentials: "same-origin", body: JSON.stringify(body),
      headers: { "Content-Type": "application/json", "X-CSRFToken": window.csrfToken() },
    }).then(function (response) {
      return response.json().catch(function () { return null; }).then(function (data) {
        if (response.ok && data) {
          say(data.ok, (data.ok ? "Connection OK" : "Not reachable") + (data.detail ? ": " + data.detail : "."));
        } else if (data && data.error) {
          say(false, data.error.message);
        } else {
          say(false, "The server answered " + response.status + ".");
        }
      });
    }).catch(function () {
      say(false, "Could not reach the server.");
    }).then(function () { button.disabled = false; });
  });
})();
