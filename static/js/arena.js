// The arena (/chat/arena/): one prompt streamed to two models at once over
// /ws/chat/ (`arena.start`), votes through REST once both sides are done,
// names revealed by the vote when the battle is anonymous.
(function () {
  "use strict";
  var root = document.getElementById("arena-app");
  if (!root) { return; }
  var C = window.ChatCommon;
  var API = root.getAttribute("data-api-url");
  var SIDES = ["a", "b"];
  var PARAMS = ["decoder", "temperature", "top_p", "max_tokens", "seed"];
  var VOTES = { a: "A is better", b: "B is better", tie: "Tie", both_bad: "Both are bad" };
  var STATUS_LABELS = { stopped: "stopped", error: "failed" };

  function $(id) { return document.getElementById(id); }
  var form = $("arena-form"), sendButton = $("arena-send"), stopButton = $("arena-stop");
  var random = $("arena-random"), pickA = $("arena-model-a"), pickB = $("arena-model-b");
  var battle = null; // the battle on screen
  var counter = 0;

  function showError(message) {
    $("arena-error").textContent = message || "";
    $("arena-error").hidden = !message;
  }

  function streaming() { return !!(battle && battle.request && !(battle.done.a && battle.done.b)); }

  function updateControls() {
    var few = pickA.options.length < 2;
    sendButton.disabled = streaming() || !live.open || few;
    stopButton.hidden = !streaming();
    pickA.disabled = pickB.disabled = random.checked;
    var votable = !!(battle && battle.id && battle.done.a && battle.done.b && !battle.vote);
    Array.prototype.forEach.call(document.querySelectorAll("[data-vote]"), function (button) {
      button.disabled = !votable;
      button.setAttribute("aria-pressed", String(!!battle && battle.vote === button.getAttribute("data-vote")));
    });
  }

  function setName(side, name) {
    var heading = $("arena-name-" + side);
    heading.textContent = "Model " + side.toUpperCase();
    if (name) {
      var badge = document.createElement("span");
      badge.className = "badge kind-base model-name";
      badge.textContent = name;
      heading.appendChild(document.createTextNode(" "));
      heading.appendChild(badge);
    }
  }

  function showSide(side, data) {
    var box = $("arena-answer-" + side);
    box.closest(".arena-side").setAttribute("data-status", data.status);
    box.closest(".arena-side").classList.toggle("streaming", data.status === "pending");
    C.setAnswerHtml(box, data.html || "");
    var error = $("arena-side-error-" + side);
    error.textContent = data.error || "";
    error.hidden = !data.error;
    var meta = $("arena-meta-" + side);
    meta.textContent = C.usageLine(data);
    if (STATUS_LABELS[data.status]) {
      var badge = document.createElement("span");
      badge.className = "badge status-" + (data.status === "error" ? "failed" : "cancelled");
      badge.textContent = STATUS_LABELS[data.status];
      meta.insertBefore(document.createTextNode(" "), meta.firstChild);
      meta.insertBefore(badge, meta.firstChild);
    }
  }

  function startSide(side) {
    var box = $("arena-answer-" + side);
    box.closest(".arena-side").setAttribute("data-status", "streaming");
    box.closest(".arena-side").classList.add("streaming");
    var node = C.streamInto(box);
    $("arena-side-error-" + side).hidden = true;
    $("arena-meta-" + side).textContent = "";
    return node;
  }

  function voteResult() {
    var result = $("arena-vote-result");
    if (!battle || !battle.vote) { result.textContent = ""; return; }
    result.textContent = "You voted: " + VOTES[battle.vote] + "." +
      (battle.names.a ? " A was " + battle.names.a + ", B was " + battle.names.b + "." : "");
  }

  // ---------------------------------------------------------------- table

  function tableRow(id) {
    var row = document.querySelector('#battle-list tr[data-battle="' + id + '"]');
    if (row) { return row; }
    row = document.createElement("tr");
    row.setAttribute("data-battle", id);
    ["battle-prompt", "", "", "", ""].forEach(function (cls, index) {
      var cell = document.createElement("td");
      if (cls) { cell.className = cls; }
      if (index === 1) { cell.setAttribute("data-model", "a"); }
      if (index === 2) { cell.setAttribute("data-model", "b"); }
      if (index === 3) { cell.setAttribute("data-vote-cell", ""); }
      row.appendChild(cell);
    });
    var open = document.createElement("button");
    open.type = "button";
    open.className = "button small";
    open.setAttribute("data-open", id);
    open.textContent = "Open";
    row.lastChild.appendChild(open);
    $("battle-list").insertBefore(row, $("battle-list").firstChild);
    $("no-battles").hidden = true;
    return row;
  }

  function muted(cell, text) {
    cell.textContent = "";
    var span = document.createElement("span");
    span.className = "muted";
    span.textContent = text;
    cell.appendChild(span);
  }

  function updateRow() {
    if (!battle || !battle.id) { return; }
    var row = tableRow(battle.id);
    var prompt = battle.prompt.length > 80 ? battle.prompt.slice(0, 79) + "…" : battle.prompt;
    row.querySelector(".battle-prompt").textContent = prompt;
    SIDES.forEach(function (side) {
      var cell = row.querySelector('[data-model="' + side + '"]');
      if (battle.names[side]) { cell.textContent = battle.names[side]; } else { muted(cell, "hidden"); }
    });
    var voteCell = row.querySelector("[data-vote-cell]");
    if (battle.vote) { voteCell.textContent = VOTES[battle.vote]; }
    else { muted(voteCell, battle.done.a && battle.done.b ? "not voted" : "streaming"); }
  }

  // ---------------------------------------------------------------- battles

  function showBattle(data) {
    battle = {
      id: data.id, request: null, prompt: data.prompt, anonymous: data.anonymous, vote: data.vote || null,
      names: { a: data.model_a, b: data.model_b },
      done: { a: data.status_a !== "pending", b: data.status_b !== "pending" }, text: {},
    };
    $("arena-battle").hidden = false;
    $("arena-prompt-shown").textContent = data.prompt;
    SIDES.forEach(function (side) {
      setName(side, battle.names[side]);
      var stats = data["stats_" + side] || {};
      showSide(side, {
        status: data["status_" + side], html: data["html_" + side], error: data["error_" + side],
        prompt_tokens: stats.prompt_tokens, completion_tokens: stats.completion_tokens,
        latency_ms: stats.latency_ms, ttft_ms: stats.ttft_ms,
      });
    });
    voteResult();
    updateRow();
    updateControls();
  }

  // `retries`: load again (1 s apart) while a side is still pending, e.g.
  // just after a reconnect, before the server has stored the stopped sides.
  function loadBattle(id, retries) {
    return C.api("GET", API + "arena/" + id + "/").then(function (data) {
      if (streaming()) { return; } // a new battle started meanwhile: leave it on screen
      showBattle(data);
      if (retries && !data.finished) { window.setTimeout(function () { loadBattle(id, retries - 1); }, 1000); }
    }).catch(function (error) { showError(error.message); });
  }

  function params() {
    var values = {};
    PARAMS.forEach(function (name) {
      var raw = $("arena-" + name).value.trim();
      if (raw === "") { return; }
      var number = Number(raw);
      values[name] = name === "decoder" ? raw : (isFinite(number) ? number : raw);
    });
    return values;
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    showError("");
    var prompt = $("arena-prompt").value;
    if (!prompt.trim()) { $("arena-prompt").focus(); return; }
    if (streaming()) { return; }
    var request = "arena-" + (counter += 1) + "-" + Date.now().toString(36);
    var frame = { type: "arena.start", request: request, prompt: prompt, models: random.checked ? null : [pickA.value, pickB.value], params: params() };
    if ($("arena-system").value.trim()) { frame.system = $("arena-system").value; }
    if (!live.send(frame)) { showError("Not connected: reconnecting…"); return; }
    battle = { id: null, request: request, prompt: prompt, anonymous: random.checked, vote: null, names: { a: null, b: null },
      done: { a: false, b: false }, text: {}, started: false };
    updateControls();
  });

  function onFrame(frame) {
    if (!battle || frame.request !== battle.request) { return; }
    if (frame.type === "start") {
      battle.started = true;
      battle.id = frame.battle;
      battle.anonymous = frame.anonymous;
      battle.names = { a: frame.models.a, b: frame.models.b };
      $("arena-battle").hidden = false;
      $("arena-prompt-shown").textContent = battle.prompt;
      SIDES.forEach(function (side) {
        setName(side, battle.names[side]);
        battle.text[side] = startSide(side);
      });
      voteResult();
      updateRow();
      $("arena-prompt").value = "";
    } else if (frame.type === "delta") {
      if (battle.text[frame.side]) { battle.text[frame.side].appendData(frame.text); }
    } else if (frame.type === "error") {
      if (!battle.started) {
        // Refused: nothing was stored.
        battle = null;
        showError(frame.message);
      } else if (frame.side) {
        battle.errors = battle.errors || {};
        battle.errors[frame.side] = frame.message;
      }
    } else if (frame.type === "done") {
      battle.done[frame.side] = true;
      showSide(frame.side, {
        status: frame.status, html: frame.html, error: battle.errors ? battle.errors[frame.side] : "",
        prompt_tokens: frame.usage.prompt_tokens, completion_tokens: frame.usage.completion_tokens,
        latency_ms: frame.latency_ms, ttft_ms: frame.ttft_ms,
      });
      if (battle.done.a && battle.done.b) { battle.request = null; }
      updateRow();
    }
    updateControls();
  }

  var live = new C.LiveSocket({
    onFrame: onFrame,
    onStatus: function (status, delay) { C.connectionLabel($("connection"), status, delay); },
    onClose: function () {
      if (streaming()) { battle.interrupted = true; }
      updateControls();
    },
    onOpen: function () {
      // A battle cut by the drop was stored with its sides stopped: show that.
      if (battle && battle.interrupted && battle.id) {
        var id = battle.id;
        window.setTimeout(function () { loadBattle(id, 5); }, 300);
      } else if (battle && battle.interrupted) {
        battle = null;
      }
      updateControls();
    },
  });
  window.chatSocket = live; // for the browser tests (drop()) and the console

  stopButton.addEventListener("click", function () {
    if (battle && battle.request) { live.send({ type: "stop", request: battle.request }); }
  });
  random.addEventListener("change", updateControls);

  $("arena-vote").addEventListener("click", function (event) {
    var button = event.target.closest("[data-vote]");
    if (!button || !battle || !battle.id) { return; }
    var vote = button.getAttribute("data-vote");
    Array.prototype.forEach.call(document.querySelectorAll("[data-vote]"), function (b) { b.disabled = true; });
    C.api("POST", API + "arena/" + battle.id + "/vote/", { vote: vote }).then(showBattle).catch(function (error) {
      $("arena-vote-result").textContent = error.message;
      updateControls();
    });
  });

  $("battle-list").addEventListener("click", function (event) {
    var button = event.target.closest("[data-open]");
    if (!button || streaming()) { return; }
    loadBattle(button.getAttribute("data-open")).then(function () {
      $("arena-battle").scrollIntoView({ block: "start" });
    });
  });

  $("export-preferences").addEventListener("click", function () {
    C.exportPreferences(this, $("export-result"), root.getAttribute("data-dataset-url"));
  });

  updateControls();
})();
