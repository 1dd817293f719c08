// Deployment page: "Check now" (health probe through the REST API, badge
// repainted by deployment_list.js's window.deploymentStatus) and the quick
// prompt box (one non-streaming chat turn through /api/deployments/<id>/try/).
(function () {
  "use strict";
  var health = document.getElementById("health");
  if (!health) { return; }
  var id = Number(health.getAttribute("data-deployment"));

  function post(url, body) {
    return fetch(url, {
      method: "POST", credentials: "same-origin", body: JSON.stringify(body || {}),
      headers: { "Content-Type": "application/json", "X-CSRFToken": window.csrfToken() },
    }).then(function (response) {
      return response.json().catch(function () { return null; }).then(function (data) { return [response, data]; });
    });
  }
  function errorMessage(body, response) {
    return body && body.error ? body.error.message : "The server answered " + response.status + ".";
  }

  var check = document.getElementById("check-now");
  var checkResult = document.getElementById("check-result");
  check.hidden = false;
  check.addEventListener("click", function () {
    check.disabled = true;
    checkResult.textContent = "Checking…";
    post(health.getAttribute("data-check-url")).then(function (pair) {
      var response = pair[0], body = pair[1];
      if (!response.ok) { checkResult.textContent = errorMessage(body, response); return; }
      window.deploymentStatus(id, body.status, body.status_detail);
      checkResult.textContent = "Checked: " + body.status + (body.status_detail ? " (" + body.status_detail + ")" : "") + ".";
    }).catch(function () {
      checkResult.textContent = "Could not reach the server.";
    }).then(function () { check.disabled = false; });
  });

  var section = document.getElementById("try");
  if (!section) { return; }  // embedding deployments have no prompt box
  section.hidden = false;
  var form = document.getElementById("try-form");
  var send = document.getElementById("try-send");
  var answer = document.getElementById("try-answer");
  var meta = document.getElementById("try-meta");
  var errorBox = document.getElementById("try-error");

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = !message;
  }
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var prompt = document.getElementById("try-prompt").value;
    if (!prompt.trim()) { showError("Write a prompt first."); return; }
    var maxTokens = Number(document.getElementById("try-max-tokens").value || 64);
    showError("");
    answer.hidden = true;
    meta.textContent = "Generating… (a local model loads on its first request)";
    send.disabled = true;
    post(section.getAttribute("data-url"), { prompt: prompt, max_tokens: maxTokens }).then(function (pair) {
      var response = pair[0], body = pair[1];
      if (!response.ok) { meta.textContent = ""; showError(errorMessage(body, response)); return; }
      answer.textContent = body.text;
      answer.hidden = false;
      meta.textContent = "finish reason: " + body.finish_reason + " · " + body.prompt_tokens + " prompt + " +
        body.completion_tokens + " completion tokens · " + body.latency_ms + " ms";
    }).catch(function () {
      meta.textContent = "";
      showError("Could not reach the server.");
    }).then(function () { send.disabled = false; });
  });
})();
