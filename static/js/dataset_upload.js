// Upload page: pick or drop a file → preview what was detected (nothing is
// stored) → upload with a progress bar → the dataset's page.
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  var input = document.getElementById("id_file");
  var zone = document.getElementById("drop-zone");
  var kind = document.getElementById("id_kind");
  var format = document.getElementById("id_format");
  var button = document.getElementById("upload-button");
  var errorBox = document.getElementById("form-error");
  var bar = document.getElementById("upload-progress");
  var file = null;
  var previewSeq = 0;  // only the latest preview's answer is shown

  var token = window.csrfToken;
  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = !message;
  }
  function errorMessage(body, status) {
    return body && body.error ? body.error.message : "The server answered " + status + ".";
  }
  function toggleEvalFields() {
    document.querySelectorAll("[data-eval-only]").forEach(function (el) { el.hidden = kind.value !== "eval"; });
  }
  function filterFormats() {
    Array.prototype.forEach.call(format.options, function (option) {
      var k = option.getAttribute("data-kind");
      var ok = !k || k === kind.value || (kind.value === "prompts" && (k === "instruction" || k === "preference"));
      option.hidden = !ok;
      if (!ok && option.selected) { format.value = ""; }
    });
  }
  function fields() {
    var data = new FormData();
    data.append("file", file);
    data.append("kind", kind.value);
    data.append("format", format.value);
    data.append("txt_mode", document.getElementById("id_txt_mode").value);
    return data;
  }
  function preview() {
    if (!file) { return; }
    showError("");
    button.disabled = true;
    var seq = ++previewSeq;
    var body = fields();
    if (kind.value === "eval") { body.append("category_map", document.getElementById("id_category_map").value); }
    fetch("/api/datasets/preview/", { method: "POST", body: body, headers: { "X-CSRFToken": token() }, credentials: "same-origin" })
      .then(function (response) { return response.json().then(function (body) { return [response, body]; }); })
      .then(function (pair) {
        if (seq !== previewSeq) { return; }
        var response = pair[0], body = pair[1];
        var section = document.getElementById("preview");
        if (!response.ok) {
          section.hidden = true;
          showError(errorMessage(body, response.status));
          return;
        }
        section.hidden = false;
        document.getElementById("preview-summary").textContent =
          "Detected: " + body.format_label + " · " + body.encoding + (body.compressed ? " · gzip" : "") +
          " · first " + body.rows.length + " canonical rows below.";
        document.getElementById("preview-rows").textContent = body.rows.map(function (r) { return JSON.stringify(r); }).join("\n");
        var errors = document.getElementById("preview-errors");
        errors.hidden = body.errors.length === 0;
        errors.textContent = body.errors.map(function (e) { return "line " + e.line + ": " + e.reason; }).join("\n");
        button.disabled = false;
      })
      .catch(function () { showError("Could not reach the server."); });
  }
  function choose(chosen) {
    file = chosen;
    document.getElementById("file-name").textContent = file ? file.name + " (" + file.size + " bytes)" : "";
    var name = document.getElementById("id_name");
    if (file && !name.value) { name.value = file.name.replace(/\.(gz)$/i, "").replace(/\.[^.]+$/, ""); }
    preview();
  }
  input.addEventListener("change", function () { choose(input.files[0] || null); });
  zone.addEventListener("dragover", function (e) { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", function () { zone.classList.remove("over"); });
  zone.addEventListener("drop", function (e) {
    e.preventDefault();
    zone.classList.remove("over");
    if (e.dataTransfer.files.length) { choose(e.dataTransfer.files[0]); }
  });
  kind.addEventListener("change", function () { filterFormats(); toggleEvalFields(); preview(); });
  format.addEventListener("change", preview);
  document.getElementById("id_txt_mode").addEventListener("change", preview);
  filterFormats();
  toggleEvalFields();

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (!file) { showError("Choose a file first."); return; }
    var data = fields();
    data.append("name", document.getElementById("id_name").value);
    data.append("on_error", document.getElementById("id_on_error").value);
    var model = document.getElementById("id_stats_model").value;
    if (model) { data.append("stats_model", model); }
    if (kind.value === "eval") { data.append("category_map", document.getElementById("id_category_map").value); }
    var request = new XMLHttpRequest();
    request.open("POST", "/api/datasets/");
    request.setRequestHeader("X-CSRFToken", token());
    request.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable) { bar.value = Math.round((100 * e.loaded) / e.total); }
    });
    request.addEventListener("load", function () {
      var body = null;
      try { body = JSON.parse(request.responseText); } catch (ignored) { body = null; }
      if (request.status === 201) {
        window.location.href = "/datasets/" + body.id + "/";
      } else {
        bar.hidden = true;
        button.disabled = false;
        showError(errorMessage(body, request.status));
      }
    });
    request.addEventListener("error", function () { showError("The upload was interrupted."); button.disabled = false; });
    bar.hidden = false;
    button.disabled = true;
    request.send(data);
  });
})();
