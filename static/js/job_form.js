// The job form: a new stage reloads the form with that stage's defaults;
// "Preview" posts the form to the preview view and shows the command and
// job.json that would run (or the field errors).
(function () {
  "use strict";
  var form = document.getElementById("job-form");
  if (!form) { return; }
  var stage = document.getElementById("id_stage");
  stage.addEventListener("change", function () {
    window.location.search = "?stage=" + encodeURIComponent(stage.value);
  });

  var button = document.getElementById("preview-button");
  var section = document.getElementById("preview");
  var errorBox = document.getElementById("preview-error");
  var body = document.getElementById("preview-body");
  button.hidden = false;

  function clearErrors() {
    Array.prototype.forEach.call(form.querySelectorAll(".field-error"), function (el) {
      el.textContent = "";
      el.hidden = true;
    });
    Array.prototype.forEach.call(form.querySelectorAll("[aria-invalid]"), function (el) { el.removeAttribute("aria-invalid"); });
  }

  function showErrors(errors) {
    var general = [];
    Object.keys(errors).forEach(function (name) {
      var message = document.getElementById("id_" + name + "_error");
      var input = document.getElementById("id_" + name);
      if (message && name !== "__all__") {
        message.textContent = errors[name];
        message.hidden = false;
        if (input) { input.setAttribute("aria-invalid", "true"); }
      } else {
        general.push(errors[name]);
      }
    });
    errorBox.textContent = general.length ? general.join(" ") : "The job would not start: see the marked fields.";
    errorBox.hidden = false;
    body.hidden = true;
  }

  button.addEventListener("click", function () {
    button.disabled = true;
    clearErrors();
    fetch(form.getAttribute("data-preview-url"), {
      method: "POST", body: new FormData(form), credentials: "same-origin",
      headers: { "X-CSRFToken": window.csrfToken() },
    }).then(function (response) {
      return response.json();
    }).then(function (data) {
      section.hidden = false;
      if (!data.ok) { showErrors(data.errors || {}); return; }
      errorBox.hidden = true;
      body.hidden = false;
      document.getElementById("preview-note").textContent = data.note;
      document.getElementById("preview-command").textContent = data.command;
      document.getElementById("preview-config").textContent = JSON.stringify(data.config, null, 2);
    }).catch(function (error) {
      section.hidden = false;
      errorBox.textContent = "Preview failed: " + error;
      errorBox.hidden = false;
      body.hidden = true;
    }).then(function () { button.disabled = false; });
  });
})();
