// New evaluation form: each candidate shows the input of its source
// (deployment or answers file), generation parameters only matter when a
// deployment answers, and the judge prompts follow the chosen mode and
// language. Every field is visible and works without this script.
(function () {
  "use strict";
  var form = document.getElementById("evaluation-form");
  if (!form) { return; }
  var defaults = JSON.parse(document.getElementById("default-templates").textContent);
  var textareas = Array.prototype.slice.call(form.querySelectorAll("textarea[data-category]"));

  function field(name) { return form.elements.namedItem(name); }
  function checked(name) {
    var box = form.querySelector('input[name="' + name + '"]:checked');
    return box ? box.value : "";
  }

  function applySources() {
    var anyDeployment = false;
    Array.prototype.forEach.call(form.querySelectorAll("[data-candidate]"), function (set) {
      var source = checked(set.getAttribute("data-candidate") + "_source");
      anyDeployment = anyDeployment || source === "deployment";
      Array.prototype.forEach.call(set.querySelectorAll("[data-source]"), function (row) {
        row.hidden = row.getAttribute("data-source") !== source;
      });
    });
    document.getElementById("generation-fields").hidden = !anyDeployment;
  }
  form.addEventListener("change", function (event) {
    if (/_source$/.test(event.target.name)) { applySources(); }
  });
  applySources();

  // Browsers may send textarea text with \r\n: compare without them.
  function same(a, b) { return a.replace(/\r\n/g, "\n") === b.replace(/\r\n/g, "\n"); }
  function currentKey() { return field("mode").value + "/" + field("language").value; }
  var shownKey = currentKey();
  var kept = document.getElementById("templates-kept");

  // A prompt still equal to the defaults it was filled with is replaced;
  // one the user edited is kept (and the page says so).
  function swapTemplates() {
    var before = defaults[shownKey] || {}, after = defaults[currentKey()];
    if (!after) { return; }
    var keptAny = false;
    textareas.forEach(function (area) {
      var category = area.getAttribute("data-category");
      if (same(area.value, before[category] || "") || !area.value.trim()) {
        area.value = after[category];
      } else if (!same(area.value, after[category])) {
        keptAny = true;
      }
    });
    kept.hidden = !keptAny;
    shownKey = currentKey();
  }
  field("mode").addEventListener("change", swapTemplates);
  field("language").addEventListener("change", swapTemplates);

  var reset = document.getElementById("reset-templates");
  reset.hidden = false;
  reset.addEventListener("click", function () {
    var set = defaults[currentKey()];
    textareas.forEach(function (area) { area.value = set[area.getAttribute("data-category")]; });
    shownKey = currentKey();
    kept.hidden = true;
  });
})();
