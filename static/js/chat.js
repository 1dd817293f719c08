// The chat page (/chat/, /chat/<id>/). Conversations come from REST
// (/api/chat/conversations/…); answers stream over /ws/chat/ (protocol:
// webapp/chat/README.md). While an answer streams its text is shown with
// textContent and a cursor; on `done` the server's sanitised HTML replaces
// it. After a dropped connection the socket reconnects with back-off and the
// open conversation is reloaded from REST (the server stored the
// interrupted answer as stopped), so nothing is lost.
(function () {
  "use strict";
  var root = document.getElementById("chat-app");
  if (!root) { return; }
  var C = window.ChatCommon;
  var API = root.getAttribute("data-api-url");
  var PAGE = root.getAttribute("data-page-url");
  var PARAMS = ["decoder", "temperature", "top_p", "top_k", "penalty_alpha", "max_tokens", "repetition_penalty", "seed"];
  // What the backends use when neither the deployment nor the panel says (inference/params.py).
  var BASE = { decoder: "sample", temperature: 1, top_p: 1, top_k: 0, penalty_alpha: 0.6, max_tokens: "", repetition_penalty: 1, seed: "" };
  var STATUS_LABELS = { stopped: "stopped", error: "failed" };

  function $(id) { return document.getElementById(id); }
  var messages = $("messages"), input = $("composer-input"), picker = $("chat-model"), system = $("system-prompt");
  var sendButton = $("send"), stopButton = $("stop"), sidebar = $("conversation-list");
  var models = {};
  JSON.parse($("chat-models").textContent).forEach(function (model) { models[model.name] = model; });

  var state = {
    conversation: null, // {id, title, model, system_prompt, params} of the open chat; null: a new chat
    view: 0, // bumped whenever another conversation is opened
    running: {}, // request id -> in-flight request
    interrupted: false,
    counter: 0,
  };

  function currentId() { return state.conversation ? state.conversation.id : null; }

  // ---------------------------------------------------------------- panel

  function panelFill(values) {
    PARAMS.forEach(function (name) {
      var field = $("param-" + name);
      var value = values[name];
      field.value = value === null || value === undefined ? "" : String(value);
      field.removeAttribute("aria-invalid");
    });
    $("field-penalty_alpha").hidden = $("param-decoder").value !== "contrastive";
  }

  function defaultsFor(name) {
    var values = Object.assign({}, BASE);
    var model = models[name];
    if (model) {
      Object.keys(model.default_params || {}).forEach(function (key) {
        if (PARAMS.indexOf(key) >= 0) { values[key] = model.default_params[key]; }
      });
    }
    return values;
  }

  // The panel as a `params` object: empty fields are left to the model.
  function panelValues() {
    var params = {};
    PARAMS.forEach(function (name) {
      var raw = $("param-" + name).value.trim();
      if (raw === "") { return; }
      if (name === "penalty_alpha" && params.decoder !== "contrastive") { return; }
      if (name === "decoder") { params.decoder = raw; return; }
      var number = Number(raw);
      params[name] = isFinite(number) ? number : raw; // the server names what is wrong
    });
    return params;
  }

  function selectModel(name) {
    if (name && !models[name]) {
      // A conversation's model that is gone (or no longer shared): shown, not choosable.
      var missing = picker.querySelector('option[data-missing]') || document.createElement("option");
      missing.setAttribute("data-missing", "");
      missing.value = "";
      missing.disabled = true;
      missing.textContent = name + " (unavailable: choose another)";
      picker.insertBefore(missing, picker.firstChild);
      picker.value = "";
      return;
    }
    var stale = picker.querySelector('option[data-missing]');
    if (stale) { stale.remove(); }
    if (name) { picker.value = name; }
  }

  // ---------------------------------------------------------------- messages

  function hideEmpty() { $("chat-empty").hidden = !!messages.querySelector(".msg"); }

  function scrollDown(force) {
    var near = messages.scrollHeight - messages.scrollTop - messages.clientHeight < 120;
    if (force || near) { messages.scrollTop = messages.scrollHeight; }
  }

  function toolButton(action, label, title) {
    var button = document.createElement("button");
    button.type = "button";
    button.className = "button small";
    button.setAttribute("data-action", action);
    button.textContent = label;
    if (title) { button.setAttribute("aria-label", title); button.title = title; }
    return button;
  }

  function userBubble(text, id) {
    var article = document.createElement("article");
    article.className = "msg user";
    if (id) { article.setAttribute("data-message", id); }
    article.rawText = text;
    var body = document.createElement("div");
    body.className = "msg-body msg-text";
    body.textContent = text;
    article.appendChild(body);
    var tools = document.createElement("div");
    tools.className = "msg-tools";
    tools.appendChild(toolButton("copy", "Copy"));
    tools.appendChild(toolButton("edit", "Edit"));
    article.appendChild(tools);
    return article;
  }

  function answerBubble(model) {
    var article = document.createElement("article");
    article.className = "msg assistant";
    var head = document.createElement("div");
    head.className = "msg-head";
    head.textContent = model || "";
    var body = document.createElement("div");
    body.className = "msg-body markdown";
    var meta = document.createElement("p");
    meta.className = "msg-meta";
    var tools = document.createElement("div");
    tools.className = "msg-tools";
    article.appendChild(head);
    article.appendChild(body);
    article.appendChild(meta);
    article.appendChild(tools);
    return article;
  }

  // The streaming state: raw text (textContent of a Text node) and a cursor.
  function startStreaming(article) {
    article.setAttribute("data-status", "streaming");
    article.classList.add("streaming");
    var body = article.querySelector(".msg-body");
    return C.streamInto(body);
  }

  // An answer in its final state (from `done` or from REST).
  function finishAnswer(article, data) {
    article.classList.remove("streaming");
    article.setAttribute("data-status", data.status);
    article.rawText = data.content;
    if (data.id) { article.setAttribute("data-message", data.id); }
    var body = article.querySelector(".msg-body");
    C.setAnswerHtml(body, data.html || "");
    var old = article.querySelector(".msg-error");
    if (old) { old.remove(); }
    if (data.status === "error") {
      var box = document.createElement("div");
      box.className = "error-box msg-error";
      box.setAttribute("role", "alert");
      var text = document.createElement("span");
      text.textContent = data.error || "The answer failed.";
      box.appendChild(text);
      box.appendChild(document.createTextNode(" "));
      box.appendChild(toolButton("regenerate", "Retry"));
      body.after(box);
    }
    var meta = article.querySelector(".msg-meta");
    meta.textContent = C.usageLine(data);
    if (STATUS_LABELS[data.status]) {
      var badge = document.createElement("span");
      badge.className = "badge status-" + (data.status === "error" ? "failed" : "cancelled");
      badge.setAttribute("data-answer-status", data.status);
      badge.textContent = STATUS_LABELS[data.status];
      meta.insertBefore(badge, meta.firstChild);
      if (meta.childNodes.length > 1) { badge.after(document.createTextNode(" ")); }
    }
    var tools = article.querySelector(".msg-tools");
    tools.textContent = "";
    if (data.content) { tools.appendChild(toolButton("copy", "Copy")); }
    // A failed answer's retry is in its error box.
    if (data.status !== "error") { tools.appendChild(toolButton("regenerate", "Regenerate")); }
    if (data.id && data.status !== "error") {
      var up = toolButton("rate", "👍", "Good answer");
      up.setAttribute("data-rating", "1");
      var down = toolButton("rate", "👎", "Bad answer");
      down.setAttribute("data-rating", "-1");
      tools.appendChild(up);
      tools.appendChild(down);
      var form = document.createElement("form");
      form.className = "feedback-comment";
      form.hidden = true;
      var field = document.createElement("input");
      field.type = "text";
      field.maxLength = 4000;
      field.placeholder = "Add a comment (optional)";
      field.setAttribute("aria-label", "Comment on this answer");
      var save = document.createElement("button");
      save.type = "submit";
      save.className = "button small";
      save.textContent = "Save comment";
      form.appendChild(field);
      form.appendChild(save);
      tools.appendChild(form);
      showFeedback(article, data.feedback);
    }
  }

  function showFeedback(article, feedback) {
    var rating = feedback ? String(feedback.rating) : null;
    Array.prototype.forEach.call(article.querySelectorAll('[data-action="rate"]'), function (button) {
      button.setAttribute("aria-pressed", String(button.getAttribute("data-rating") === rating));
    });
    var form = article.querySelector(".feedback-comment");
    if (form) {
      form.hidden = !feedback;
      form.querySelector("input").value = feedback ? feedback.comment : "";
    }
    article.setAttribute("data-feedback", rating || "");
  }

  function renderStored(message) {
    if (message.role === "user") { return userBubble(message.content, message.id); }
    var article = answerBubble(message.model);
    finishAnswer(article, message);
    return article;
  }

  // Edit on the last user message; Regenerate/Retry on the answer after it.
  function refreshLastTools() {
    var all = messages.querySelectorAll(".msg");
    var lastUser = null, lastAnswer = null;
    Array.prototype.forEach.call(all, function (article) {
      if (article.classList.contains("user")) { lastUser = article; lastAnswer = null; } else { lastAnswer = article; }
    });
    var busy = isBusy();
    Array.prototype.forEach.call(messages.querySelectorAll('[data-action="edit"]'), function (button) {
      button.hidden = busy || button.closest(".msg") !== lastUser || !lastUser.getAttribute("data-message");
    });
    Array.prototype.forEach.call(messages.querySelectorAll('[data-action="regenerate"]'), function (button) {
      button.hidden = busy || button.closest(".msg") !== lastAnswer;
    });
  }

  function renderThread(list) {
    Array.prototype.forEach.call(messages.querySelectorAll(".msg"), function (article) { article.remove(); });
    list.forEach(function (message) { messages.appendChild(renderStored(message)); });
    // An answer of this conversation still streaming (opened again meanwhile).
    Object.keys(state.running).forEach(function (key) {
      var request = state.running[key];
      if (request.article && request.conversation === currentId()) { messages.appendChild(request.article); }
    });
    hideEmpty();
    refreshLastTools();
    scrollDown(true);
  }

  // ---------------------------------------------------------------- controls

  function isBusy() {
    var id = currentId();
    return Object.keys(state.running).some(function (key) {
      var request = state.running[key];
      return request.conversation === id && (id !== null || request.view === state.view);
    });
  }

  function updateControls() {
    var busy = isBusy();
    sendButton.disabled = busy || !live.open || !picker.value;
    stopButton.hidden = !busy;
    refreshLastTools();
  }

  function showError(message, param) {
    var box = $("composer-error");
    box.textContent = message;
    box.hidden = !message;
    if (param && PARAMS.indexOf(param) >= 0) {
      $("param-" + param).setAttribute("aria-invalid", "true");
    } else if (param === "system") {
      system.setAttribute("aria-invalid", "true");
    }
  }

  // ---------------------------------------------------------------- sidebar

  function sidebarItem(id) {
    var item = sidebar.querySelector('li[data-conversation="' + id + '"]');
    if (item) { return item; }
    item = $("conversation-item").content.firstElementChild.cloneNode(true);
    item.setAttribute("data-conversation", id);
    item.querySelector(".conversation-link").href = PAGE + id + "/";
    item.querySelector('[data-action="export"]').href = API + "conversations/" + id + "/export/";
    sidebar.insertBefore(item, sidebar.firstChild);
    $("no-conversations").hidden = true;
    return item;
  }

  function sidebarUpdate(id, title, toTop) {
    var item = sidebarItem(id);
    item.querySelector(".conversation-link").textContent = title || "Untitled";
    if (toTop && sidebar.firstChild !== item) { sidebar.insertBefore(item, sidebar.firstChild); }
  }

  function markCurrent() {
    Array.prototype.forEach.call(sidebar.querySelectorAll("li"), function (item) {
      var current = String(currentId()) === item.getAttribute("data-conversation");
      item.classList.toggle("current", current);
      var link = item.querySelector(".conversation-link");
      if (current) { link.setAttribute("aria-current", "page"); } else { link.removeAttribute("aria-current"); }
    });
  }

  function setConversation(conversation) {
    state.conversation = conversation;
    root.setAttribute("data-conversation", conversation ? conversation.id : "");
    document.title = (conversation ? conversation.title || "Chat" : "Chat") + " · Workbench";
    markCurrent();
  }

  // ---------------------------------------------------------------- opening

  function openConversation(id, push) {
    state.view += 1;
    var view = state.view;
    showError("");
    return C.api("GET", API + "conversations/" + id + "/").then(function (conversation) {
      if (view !== state.view) { return; }
      setConversation({ id: conversation.id, title: conversation.title, model: conversation.model,
        system_prompt: conversation.system_prompt, params: conversation.params });
      if (push) { window.history.pushState({ conversation: conversation.id }, "", PAGE + conversation.id + "/"); }
      selectModel(conversation.model);
      panelFill(Object.assign(defaultsFor(conversation.model), conversation.params || {}));
      system.value = conversation.system_prompt || "";
      renderThread(conversation.messages);
      updateControls();
    }).catch(function (error) {
      if (view !== state.view) { return; }
      if (error.status === 404) {
        var gone = sidebar.querySelector('li[data-conversation="' + id + '"]');
        if (gone) { gone.remove(); }
        newChat(true);
      }
      showError(error.message);
    });
  }

  function newChat(push) {
    state.view += 1;
    setConversation(null);
    if (push) { window.history.pushState({ conversation: null }, "", PAGE); }
    Array.prototype.forEach.call(messages.querySelectorAll(".msg"), function (article) { article.remove(); });
    system.value = "";
    selectModel(picker.value || (picker.options[0] && picker.options[0].value));
    panelFill(defaultsFor(picker.value));
    hideEmpty();
    showError("");
    updateControls();
    input.focus();
  }

  // ---------------------------------------------------------------- turns

  function sendTurn(kind, content, editForm) {
    showError("");
    if (!picker.value) { showError("Choose a model first.", "model"); return false; }
    if (isBusy()) { return false; }
    var id = "r" + (state.counter += 1) + "-" + Date.now().toString(36);
    var frame = { type: kind, request: id, conversation: currentId(), model: picker.value, params: panelValues(), system: system.value };
    if (kind !== "regenerate") { frame.content = content; }
    if (!live.send(frame)) { showError("Not connected: reconnecting…"); return false; }
    var request = { id: id, kind: kind, conversation: currentId(), view: state.view, content: content, started: false, editForm: editForm };
    if (kind === "send") {
      request.userArticle = userBubble(content);
      messages.appendChild(request.userArticle);
      hideEmpty();
      scrollDown(true);
    }
    state.running[id] = request;
    updateControls();
    return true;
  }

  // `start`: the answer streams from now on; `stored`: the turn is in the
  // database (its ids). Messages the turn replaces (always the end of the
  // thread) leave the page at `start` and come back if the turn is refused
  // before `stored`.
  function onStart(request, frame) {
    request.started = true;
    if (request.view !== state.view) { return; }
    request.replaced = [];
    (frame.replaces || []).forEach(function (id) {
      var old = messages.querySelector('.msg[data-message="' + id + '"]');
      if (old) { old.remove(); request.replaced.push(old); }
    });
    if (request.kind === "edit") {
      request.userArticle = userBubble(request.content);
      messages.appendChild(request.userArticle);
    }
    request.article = answerBubble(frame.model);
    request.text = startStreaming(request.article);
    request.article.querySelector(".msg-tools").appendChild(toolButton("stop", "Stop"));
    messages.appendChild(request.article);
    hideEmpty();
    updateControls();
    scrollDown(true);
  }

  function onStored(request, frame) {
    request.stored = true;
    request.conversation = frame.conversation;
    var viewing = request.view === state.view;
    if (frame.created && viewing) {
      setConversation({ id: frame.conversation, title: frame.title, model: picker.value, system_prompt: system.value, params: panelValues() });
      window.history.replaceState({ conversation: frame.conversation }, "", PAGE + frame.conversation + "/");
    }
    sidebarUpdate(frame.conversation, frame.title, true);
    markCurrent();
    if (!viewing) { return; }
    request.replaced = [];
    (frame.replaces || []).forEach(function (id) {
      var old = messages.querySelector('.msg[data-message="' + id + '"]');
      if (old) { old.remove(); }
    });
    if (request.userArticle) { request.userArticle.setAttribute("data-message", frame.user_message); }
  }

  // Refused (before `stored`): nothing was kept; undo what the page showed
  // and give the text back.
  function unsend(request) {
    if (request.article) { request.article.remove(); }
    if (request.userArticle) {
      request.userArticle.remove();
      if (!input.value && request.kind === "send") { input.value = request.content; }
    }
    (request.replaced || []).forEach(function (old) { messages.appendChild(old); });
    if (request.editForm) { request.editForm.hidden = false; }
    hideEmpty();
  }

  function onDelta(request, frame) {
    if (!request.text) { return; }
    request.text.appendData(frame.text);
    scrollDown(false);
  }

  function onDone(request, frame) {
    delete state.running[request.id];
    if (request.article) {
      finishAnswer(request.article, {
        id: frame.message, status: frame.status, content: request.text ? request.text.data : "",
        html: frame.html, error: request.error, prompt_tokens: frame.usage.prompt_tokens,
        completion_tokens: frame.usage.completion_tokens, latency_ms: frame.latency_ms, ttft_ms: frame.ttft_ms,
        feedback: null,
      });
    }
    updateControls();
    scrollDown(false);
  }

  function onError(request, frame) {
    if (request.stored) {
      // A failed generation: `done` (status error) follows and shows it inline.
      request.error = frame.message;
      return;
    }
    delete state.running[request.id];
    unsend(request);
    showError(frame.message, frame.param);
    updateControls();
  }

  function onFrame(frame) {
    if (frame.type === "pong") { return; }
    var request = frame.request !== null && frame.request !== undefined ? state.running[frame.request] : null;
    if (!request) {
      if (frame.type === "error" && frame.code !== "not_found") { showError(frame.message, frame.param); }
      return;
    }
    if (frame.type === "start") { onStart(request, frame); }
    else if (frame.type === "stored") { onStored(request, frame); }
    else if (frame.type === "delta") { onDelta(request, frame); }
    else if (frame.type === "done") { onDone(request, frame); }
    else if (frame.type === "error") { onError(request, frame); }
  }

  // ---------------------------------------------------------------- socket

  var live = new C.LiveSocket({
    onFrame: onFrame,
    onStatus: function (status, delay) { C.connectionLabel($("connection"), status, delay); },
    onClose: function () {
      // The server stops this socket's generations and stores them as
      // stopped; mark them and reload once reconnected.
      Object.keys(state.running).forEach(function (key) {
        var request = state.running[key];
        if (!request.stored) {
          // The turn was not stored (as far as the page knows): give the text back.
          unsend(request);
          request.article = null;
        }
        if (request.article) {
          request.article.classList.remove("streaming");
          var cursor = request.article.querySelector(".cursor");
          if (cursor) { cursor.remove(); }
          request.article.querySelector(".msg-meta").textContent = "Connection lost: reloading when it is back…";
        }
        state.interrupted = true;
      });
      state.running = {};
      updateControls();
    },
    onOpen: function (reconnected) {
      updateControls();
      if (reconnected && currentId() !== null) {
        var id = currentId();
        openConversation(id, false);
        if (state.interrupted) {
          // The interrupted answer may be stored a moment after we reconnect.
          window.setTimeout(function () { if (currentId() === id && !isBusy()) { openConversation(id, false); } }, 1500);
        }
      }
      state.interrupted = false;
    },
  });
  window.chatSocket = live; // for the browser tests (drop()) and the console

  // ---------------------------------------------------------------- events

  $("composer").addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value;
    if (!text.trim()) { input.focus(); return; }
    if (sendTurn("send", text)) { input.value = ""; }
  });
  input.addEventListener("keydown", function (event) {
    // Enter sends; Shift+Enter is a new line; never while an IME composes.
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  stopButton.addEventListener("click", function () {
    Object.keys(state.running).forEach(function (key) {
      if (state.running[key].conversation === currentId()) { live.send({ type: "stop", request: key }); }
    });
  });
  picker.addEventListener("change", function () {
    selectModel(picker.value);
    panelFill(defaultsFor(picker.value));
    updateControls();
  });
  $("param-decoder").addEventListener("change", function () {
    $("field-penalty_alpha").hidden = this.value !== "contrastive";
  });
  $("chat-settings").addEventListener("input", function (event) { event.target.removeAttribute("aria-invalid"); });
  $("reset-params").addEventListener("click", function () { panelFill(defaultsFor(picker.value)); });
  $("toggle-settings").addEventListener("click", function () {
    var panel = $("chat-settings");
    panel.hidden = !panel.hidden;
    root.classList.toggle("no-settings", panel.hidden);
    this.setAttribute("aria-expanded", String(!panel.hidden));
  });
  $("new-chat").addEventListener("click", function () { newChat(true); });
  $("export-preferences").addEventListener("click", function () {
    C.exportPreferences(this, $("export-result"), root.getAttribute("data-dataset-url"));
  });
  window.addEventListener("popstate", function () {
    var match = window.location.pathname.match(/\/(\d+)\/$/);
    if (match) { openConversation(Number(match[1]), false); } else { newChat(false); }
  });

  function rate(article, rating) {
    var id = article.getAttribute("data-message");
    var url = API + "messages/" + id + "/feedback/";
    var current = article.getAttribute("data-feedback");
    var undo = current === String(rating);
    var call = undo ? C.api("DELETE", url) : C.api("POST", url, { rating: rating, comment: article.querySelector(".feedback-comment input").value });
    call.then(function (message) {
      showFeedback(article, undo ? null : message.feedback);
      if (!undo) { article.querySelector(".feedback-comment input").focus(); }
    }).catch(function (error) { showError(error.message); });
  }

  messages.addEventListener("submit", function (event) {
    var form = event.target;
    event.preventDefault();
    var article = form.closest(".msg");
    if (form.classList.contains("feedback-comment")) {
      var rating = Number(article.getAttribute("data-feedback"));
      var button = form.querySelector("button");
      C.api("POST", API + "messages/" + article.getAttribute("data-message") + "/feedback/",
        { rating: rating, comment: form.querySelector("input").value }).then(function (message) {
        showFeedback(article, message.feedback);
        button.textContent = "Saved";
        window.setTimeout(function () { button.textContent = "Save comment"; }, 1500);
      }).catch(function (error) { showError(error.message); });
    } else if (form.classList.contains("edit-form")) {
      var text = form.querySelector("textarea").value;
      if (!text.trim()) { return; }
      // Hidden until `start` replaces the message (or shown again if refused).
      if (sendTurn("edit", text, form)) { form.hidden = true; }
    }
  });

  function startEdit(article) {
    if (article.querySelector(".edit-form")) { return; }
    var body = article.querySelector(".msg-text");
    var form = document.createElement("form");
    form.className = "edit-form stack";
    var area = document.createElement("textarea");
    area.rows = 3;
    area.value = article.rawText;
    area.setAttribute("aria-label", "Edit your message");
    var row = document.createElement("div");
    row.className = "row-form";
    var save = document.createElement("button");
    save.type = "submit";
    save.className = "button small primary";
    save.textContent = "Save & send";
    row.appendChild(save);
    row.appendChild(toolButton("edit-cancel", "Cancel"));
    form.appendChild(area);
    form.appendChild(row);
    body.hidden = true;
    body.after(form);
    area.focus();
  }

  messages.addEventListener("click", function (event) {
    var button = event.target.closest("[data-action]");
    if (!button || !messages.contains(button)) { return; }
    var article = button.closest(".msg");
    var action = button.getAttribute("data-action");
    if (action === "copy") {
      C.copy(article.rawText !== undefined ? article.rawText : article.querySelector(".msg-body").textContent, button);
    } else if (action === "regenerate") {
      sendTurn("regenerate");
    } else if (action === "stop") {
      Object.keys(state.running).forEach(function (key) {
        if (state.running[key].article === article) { live.send({ type: "stop", request: key }); }
      });
    } else if (action === "edit") {
      startEdit(article);
    } else if (action === "edit-cancel") {
      button.closest(".edit-form").remove();
      article.querySelector(".msg-text").hidden = false;
    } else if (action === "rate") {
      rate(article, Number(button.getAttribute("data-rating")));
    }
  });

  sidebar.addEventListener("click", function (event) {
    var item = event.target.closest("li[data-conversation]");
    if (!item) { return; }
    var id = Number(item.getAttribute("data-conversation"));
    var link = event.target.closest(".conversation-link");
    var action = event.target.closest("[data-action]");
    if (link) {
      if (event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) { return; }
      event.preventDefault();
      if (id !== currentId()) { openConversation(id, true); }
    } else if (action && action.getAttribute("data-action") === "rename") {
      renameInline(item, id);
    } else if (action && action.getAttribute("data-action") === "delete") {
      var title = item.querySelector(".conversation-link").textContent;
      if (!window.confirm("Delete “" + title + "”? Its messages and ratings go with it.")) { return; }
      C.api("DELETE", API + "conversations/" + id + "/").then(function () {
        item.remove();
        $("no-conversations").hidden = !!sidebar.querySelector("li");
        if (id === currentId()) { newChat(true); }
      }).catch(function (error) { showError(error.message); });
    }
  });

  function renameInline(item, id) {
    var link = item.querySelector(".conversation-link");
    if (item.querySelector(".rename-input")) { return; }
    var field = document.createElement("input");
    field.type = "text";
    field.className = "rename-input";
    field.maxLength = 200;
    field.value = link.textContent;
    field.setAttribute("aria-label", "New title");
    link.hidden = true;
    link.after(field);
    field.focus();
    field.select();
    var finished = false;
    function close(save) {
      if (finished) { return; }
      finished = true;
      var title = field.value.trim();
      field.remove();
      link.hidden = false;
      if (!save || !title || title === link.textContent) { return; }
      C.api("PATCH", API + "conversations/" + id + "/", { title: title }).then(function (conversation) {
        link.textContent = conversation.title;
        if (id === currentId()) { state.conversation.title = conversation.title; document.title = conversation.title + " · Workbench"; }
      }).catch(function (error) { showError(error.message); });
    }
    field.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && !event.isComposing) { event.preventDefault(); close(true); }
      if (event.key === "Escape") { close(false); }
    });
    field.addEventListener("blur", function () { close(true); });
  }

  // ---------------------------------------------------------------- start

  var initial = root.getAttribute("data-conversation");
  if (initial) {
    state.conversation = { id: Number(initial) };
    openConversation(Number(initial), false);
  } else {
    panelFill(defaultsFor(picker.value));
  }
  window.history.replaceState({ conversation: initial ? Number(initial) : null }, "", window.location.pathname);
  updateControls();
})();
