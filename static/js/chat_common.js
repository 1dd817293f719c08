// Shared by the chat and arena pages (chat.js, arena.js): the /ws/chat/
// socket with reconnection, JSON calls to /api/chat/, answer HTML, usage
// lines, copy buttons and the preference export. No dependencies.
(function () {
  "use strict";
  var Chat = {};

  // fetch() JSON with the CSRF token; rejects with the API's error message
  // (error.status and error.param set) on a non-2xx answer.
  Chat.api = function (method, url, body) {
    var init = { method: method, credentials: "same-origin", headers: { "Accept": "application/json", "X-CSRFToken": window.csrfToken() } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(url, init).then(function (response) {
      if (response.status === 204) { return null; }
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (!response.ok) {
          var error = new Error((data.error && data.error.message) || response.statusText || ("HTTP " + response.status));
          error.status = response.status;
          error.param = data.error ? data.error.param : null;
          throw error;
        }
        return data;
      });
    });
  };

  // The chat socket. Reconnects after a drop with exponential back-off
  // (0.5 s doubling to 15 s, ±25 % jitter), at once when the browser comes
  // back online; never after 4401 (logged out).
  // options: onFrame(frame), onOpen(reconnected), onClose(event), onStatus(state, delayMs)
  function LiveSocket(options) {
    this.options = options;
    this.attempts = 0;
    this.opened = false;
    this.open = false;
    this.socket = null;
    this.timer = null;
    var self = this;
    window.addEventListener("online", function () { if (!self.open && self.timer) { self.retryNow(); } });
    this.connect();
  }
  LiveSocket.prototype.connect = function () {
    var self = this;
    this.timer = null;
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + window.location.host + "/ws/chat/");
    this.socket = socket;
    this.options.onStatus("connecting");
    socket.onopen = function () {
      var again = self.opened;
      self.opened = true;
      self.open = true;
      self.attempts = 0;
      document.body.setAttribute("data-live", "open");
      self.options.onStatus("open");
      self.options.onOpen(again);
    };
    socket.onmessage = function (message) {
      var frame;
      try { frame = JSON.parse(message.data); } catch (error) { return; }
      self.options.onFrame(frame);
    };
    socket.onclose = function (event) {
      if (self.socket !== socket) { return; }
      self.open = false;
      document.body.removeAttribute("data-live");
      self.options.onClose(event);
      if (event.code === 4401) { self.options.onStatus("logged-out"); return; }
      var delay = Math.min(15000, 500 * Math.pow(2, self.attempts)) * (0.75 + Math.random() * 0.5);
      self.attempts += 1;
      self.options.onStatus("reconnecting", delay);
      self.timer = window.setTimeout(function () { self.connect(); }, delay);
    };
  };
  LiveSocket.prototype.retryNow = function () {
    window.clearTimeout(this.timer);
    this.connect();
  };
  // Drop the connection as a network failure would (used by tests and the
  // "offline" event); the socket reconnects by itself.
  LiveSocket.prototype.drop = function () {
    if (this.socket) { this.socket.close(); }
  };
  LiveSocket.prototype.send = function (frame) {
    if (!this.open) { return false; }
    this.socket.send(JSON.stringify(frame));
    return true;
  };
  Chat.LiveSocket = LiveSocket;

  Chat.connectionLabel = function (badge, state, delay) {
    var labels = { connecting: "Connecting…", open: "Live", "logged-out": "Logged out — reload the page" };
    badge.textContent = state === "reconnecting" ? "Reconnecting in " + Math.max(1, Math.round(delay / 1000)) + " s…" : labels[state];
    badge.className = "badge" + (state === "open" ? " ok" : state === "connecting" ? "" : " status-unhealthy");
    badge.setAttribute("data-state", state);
  };

  // "11 + 24 tokens · 1.32 s · first token 85 ms · 18 tokens/s"
  Chat.usageLine = function (usage) {
    var parts = [];
    if (usage.prompt_tokens || usage.completion_tokens) {
      parts.push(usage.prompt_tokens + " + " + usage.completion_tokens + " tokens");
    }
    if (usage.latency_ms) {
      parts.push((usage.latency_ms / 1000).toFixed(2) + " s");
      if (usage.latency_ms > 0 && usage.completion_tokens) {
        parts.push(Math.round(usage.completion_tokens * 1000 / usage.latency_ms) + " tokens/s");
      }
    }
    if (usage.ttft_ms !== null && usage.ttft_ms !== undefined) { parts.push("first token " + usage.ttft_ms + " ms"); }
    return parts.join(" · ");
  };

  Chat.copy = function (text, button) {
    function done() {
      var label = button.textContent;
      button.textContent = "Copied";
      window.setTimeout(function () { button.textContent = label; }, 1500);
    }
    function fallback() {
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.style.position = "fixed";
      area.style.opacity = "0";
      document.body.appendChild(area);
      area.select();
      try { document.execCommand("copy"); } catch (error) { /* nothing more to try */ }
      area.remove();
      done();
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, fallback);
    } else {
      fallback();
    }
  };

  // An answer's HTML. `html` comes from the server, rendered from Markdown
  // and sanitised there (webapp/chat/markdown.py): this is the only place
  // the pages set innerHTML. Streaming text never goes through here.
  Chat.setAnswerHtml = function (box, html) {
    box.innerHTML = html;
    Array.prototype.forEach.call(box.querySelectorAll("pre"), function (pre) {
      var wrap = document.createElement("div");
      wrap.className = "code-block";
      pre.parentNode.insertBefore(wrap, pre);
      wrap.appendChild(pre);
      var button = document.createElement("button");
      button.type = "button";
      button.className = "button small code-copy";
      button.textContent = "Copy code";
      button.addEventListener("click", function () { Chat.copy(pre.textContent, button); });
      wrap.appendChild(button);
    });
  };

  // The blinking cursor shown while an answer streams.
  Chat.cursor = function () {
    var cursor = document.createElement("span");
    cursor.className = "cursor";
    cursor.setAttribute("aria-hidden", "true");
    return cursor;
  };

  // Empty `box` and give it a streaming text node (plain text, never HTML)
  // followed by the cursor; returns the node the deltas are appended to.
  Chat.streamInto = function (box) {
    box.textContent = "";
    var text = document.createElement("span");
    text.className = "msg-text stream-text";
    var node = document.createTextNode("");
    text.appendChild(node);
    box.appendChild(text);
    box.appendChild(Chat.cursor());
    return node;
  };

  // POST /api/chat/preferences/export/ and show a link to the new dataset.
  Chat.exportPreferences = function (button, result, datasetUrl) {
    button.disabled = true;
    result.textContent = "Exporting…";
    result.classList.remove("field-error");
    Chat.api("POST", "/api/chat/preferences/export/", {}).then(function (body) {
      var dataset = body.dataset;
      result.textContent = "";
      var link = document.createElement("a");
      link.href = datasetUrl.replace("/0/", "/" + dataset.id + "/");
      link.id = "export-link";
      link.textContent = dataset.name + " v" + dataset.version;
      result.appendChild(document.createTextNode("Dataset "));
      result.appendChild(link);
      result.appendChild(document.createTextNode(": " + body.pairs.arena + " pairs from arena votes, " + body.pairs.feedback + " from 👍/👎."));
    }).catch(function (error) {
      result.textContent = error.message;
      result.classList.add("field-error");
    }).then(function () { button.disabled = false; });
  };

  window.ChatCommon = Chat;
})();
