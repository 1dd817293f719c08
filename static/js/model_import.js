// Import page: the archive form goes to the REST API with a progress bar
// (without this script it posts to the page, which works too), then the
// server unpacks and checks the model and the browser opens its page.
(function () {
  "use strict";
  var form = document.getElementById("tarball-form");
  if (!form) { return; }
  var input = document.getElementById("id_tarball-file");
  var name = document.getElementById("id_tarball-name");
  var button = document.getElementById("tarball-button");
  var errorBox = document.getElementById("tarball-error");
  var bar = document.getElementById("tarball-progress");
  var statusLine = document.getElementById("tarball-status");

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = !message;
  }
  function errorMessage(body, status) {
    return body && body.error ? body.error.message : "The server answered " + status + ".";
  }
  function setStatus(text) {
    statusLine.textContent = text;
    statusLine.hidden = !text;
  }
  function finish() {
    bar.hidden = true;
    button.disabled = false;
    setStatus("");
  }

  input.addEventListener("change", function () {
    var file = input.files[0];
    if (file && !name.value) {
      name.value = file.name.replace(/\.(tar\.gz|tgz|tar)$/i, "").replace(/[^A-Za-z0-9._-]+/g, "-").replace(/^[._-]+|[._-]+$/g, "");
    }
  });

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    showError("");
    var file = input.files[0];
    if (!file) { showError("Choose a .tar.gz, .tgz or .tar file first."); return; }
    var data = new FormData();
    data.append("file", file);
    data.append("name", name.value);
    data.append("kind", document.getElementById("id_tarball-kind").value);
    data.append("description", document.getElementById("id_tarball-description").value);
    var request = new XMLHttpRequest();
    request.open("POST", "/api/models/import/");
    request.setRequestHeader("X-CSRFToken", window.csrfToken());
    request.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable) {
        bar.value = Math.round((100 * e.loaded) / e.total);
        setStatus("Uploading… " + bar.value + "%");
      }
    });
    request.upload.addEventListener("load", function () {
      bar.removeAttribute("value");  // indeterminate while the server works
      setStatus("Uploaded. Unpacking and checking the model with transformers…");
    });
    request.addEventListener("load", function () {
      var body = null;
      try { body = JSON.parse(request.responseText); } catch (ignored) { body = null; }
      if (request.status === 201 && body) {
        window.location.href = "/models/" + body.id + "/";
        return;
      }
      finish();
      showError(errorMessage(body, request.status));
    });
    request.addEventListener("error", function () { finish(); showError("The upload was interrupted."); });
    bar.value = 0;
    bar.hidden = false;
    button.disabled = true;
    setStatus("Uploading…");
    request.send(data);
  });
})();
