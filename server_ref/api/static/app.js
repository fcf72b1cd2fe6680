/*
 * The chat page of server_ref: plain JavaScript, no build step, no third-party code, and no
 * request to anything but this server (it works offline).
 *
 * Flow of one turn: the composer's text becomes a user message; POST /v1/chat/completions with
 * stream=true returns server-sent events, read through fetch + ReadableStream and parsed by
 * SSEParser; each content delta is appended to the assistant bubble as a text node. Stop aborts
 * the fetch (AbortController): the connection closes, the server sees the disconnect and frees
 * the request, and the partial reply stays in the conversation, marked as stopped.
 *
 * Text from the user and the model is only ever inserted as text (textContent, text nodes),
 * never parsed as HTML.
 */
(() => {
  "use strict";

  const API_KEY_STORAGE = "server_ref.apiKey"; // sessionStorage: this tab only
  const SETTINGS_STORAGE = "server_ref.settings"; // localStorage: not secret

  // ---- Server-sent events ------------------------------------------------------------------

  /**
   * Push-style parser of an event stream, after the WHATWG "event stream interpretation":
   * lines end in CRLF, LF or CR; `data:` lines of one event are joined with "\n"; a blank line
   * dispatches; lines starting with ":" are comments; other fields are ignored.
   *
   *   const parser = new SSEParser();
   *   parser.push('data: {"a"');      // -> []
   *   parser.push(': 1}\n\n');        // -> ['{"a": 1}']
   */
  class SSEParser {
    constructor() {
      this.buffer = "";
      this.data = [];
      this.skipLF = false; // the last chunk ended in CR; an LF starting the next one is its pair
    }

    /** Feed decoded text; returns the data of every event it completed. */
    push(text) {
      if (this.skipLF && text.length > 0) {
        this.skipLF = false;
        if (text[0] === "\n") text = text.slice(1);
      }
      this.buffer += text;
      const events = [];
      const newline = /\r\n|\r|\n/g;
      let start = 0;
      let match;
      while ((match = newline.exec(this.buffer)) !== null) {
        if (match[0] === "\r" && newline.lastIndex === this.buffer.length) this.skipLF = true;
        this.line(this.buffer.slice(start, match.index), events);
        start = newline.lastIndex;
      }
      this.buffer = this.buffer.slice(start);
      return events;
    }

    line(line, events) {
      if (line === "") {
        if (this.data.length > 0) events.push(this.data.join("\n"));
        this.data = [];
        return;
      }
      if (line.startsWith(":")) return;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "data") this.data.push(value);
    }
  }

  // ---- Errors ------------------------------------------------------------------------------

  /** An error worth showing in the page: a short title, the detail, and what to do about it. */
  class ChatError extends Error {
    constructor(title, detail, hint = "") {
      super(detail);
      this.name = "ChatError";
      this.title = title;
      this.hint = hint;
    }
  }

  function messageOf(body) {
    const error = body && typeof body === "object" ? body.error ?? body.detail : undefined;
    if (typeof error === "string") return error;
    if (error && typeof error.message === "string") return error.message;
    return error === undefined ? "" : JSON.stringify(error);
  }

  async function errorFromResponse(response) {
    const text = await response.text().catch(() => "");
    let message = "";
    try {
      message = messageOf(JSON.parse(text));
    } catch {
      message = text.trim().slice(0, 300); // not JSON: a proxy's page, say
    }
    const status = `${response.status}${response.statusText ? " " + response.statusText : ""}`;
    let hint = "";
    if (response.status === 401 || response.status === 403) {
      hint = "Enter the server's API key under Settings.";
    } else if (response.status === 429) {
      const after = response.headers.get("Retry-After");
      hint = `The server is busy; try again ${after ? `in ${after} s` : "shortly"}.`;
    } else if (response.status >= 500) {
      hint = "The server's log has the details.";
    }
    return new ChatError(`Error ${status}`, message || "The server gave no details.", hint);
  }

  function networkError(err) {
    const detail = err && err.message ? err.message : String(err);
    return new ChatError("Could not reach the server", detail, "Check that it is still running.");
  }

  const isAbort = (err) => err && err.name === "AbortError";

  // ---- Page state and elements -------------------------------------------------------------

  const $ = (id) => document.getElementById(id);
  const el = {
    modelStatus: $("model-status"),
    modelName: $("model-name"),
    banner: $("banner"),
    bannerTitle: $("banner-title"),
    bannerText: $("banner-text"),
    scroller: $("scroller"),
    messages: $("messages"),
    empty: $("empty"),
    composer: $("composer"),
    prompt: $("prompt"),
    send: $("send"),
    stop: $("stop"),
    newChat: $("new-chat"),
    settings: $("settings"),
    settingsToggle: $("settings-toggle"),
    system: $("system"),
    temperature: $("temperature"),
    temperatureValue: $("temperature-value"),
    maxTokens: $("max-tokens"),
    apiKey: $("api-key"),
    usagePrompt: $("usage-prompt"),
    usageCompletion: $("usage-completion"),
    usageSpeed: $("usage-speed"),
    usageTtft: $("usage-ttft"),
  };

  const state = {
    /** {role, content, status, node, body, meta}; status: done|streaming|stopped|error. */
    messages: [],
    turn: null, // the reply in flight: {controller, reason}; reason "stop" or "reset" once aborted
    modelId: null,
    modelRequest: 0, // sequence number: only the newest /v1/models answer counts
  };

  function authHeaders() {
    const key = el.apiKey.value.trim();
    return key ? { Authorization: `Bearer ${key}` } : {};
  }

  function showBanner(error) {
    el.bannerTitle.textContent = error.title;
    el.bannerText.textContent = [error.message, error.hint].filter(Boolean).join(" ");
    el.banner.hidden = false;
  }

  function hideBanner() {
    el.banner.hidden = true;
  }

  function setModelStatus(kind, text) {
    el.modelStatus.dataset.state = kind;
    el.modelName.textContent = text;
  }

  // ---- Model -------------------------------------------------------------------------------

  async function loadModel() {
    const request = ++state.modelRequest;
    setModelStatus("pending", "Connecting…");
    try {
      let response;
      try {
        response = await fetch("v1/models", { headers: authHeaders(), cache: "no-store" });
      } catch (err) {
        throw networkError(err);
      }
      if (!response.ok) throw await errorFromResponse(response);
      const body = await response.json().catch(() => null);
      const models = body && Array.isArray(body.data) ? body.data : [];
      // the first model that chats (the embedding model is listed too, with its capabilities)
      const model = models.find((m) => !Array.isArray(m.capabilities) || m.capabilities.includes("chat"));
      if (!model) throw new ChatError("No model", "The server lists no chat model.");
      if (request !== state.modelRequest) return;
      state.modelId = model.id;
      if (Number.isInteger(model.max_model_len)) el.maxTokens.max = String(model.max_model_len);
      setModelStatus("ready", model.id);
      document.title = `${model.id} · server_ref`;
      hideBanner();
    } catch (err) {
      if (request !== state.modelRequest) return;
      const error = err instanceof ChatError ? err : networkError(err);
      state.modelId = null;
      const needsKey = error.title.startsWith("Error 401");
      setModelStatus("error", needsKey ? "API key needed" : "Not connected");
      showBanner(error);
    }
  }

  // ---- Conversation rendering --------------------------------------------------------------

  function addMessage(role, content) {
    const node = document.createElement("article");
    node.className = `msg msg-${role}`;
    const label = document.createElement("div");
    label.className = "msg-role";
    label.textContent = role === "user" ? "You" : "Assistant";
    const body = document.createElement("div");
    body.className = "msg-body";
    body.textContent = content;
    const meta = document.createElement("div");
    meta.className = "msg-meta";
    node.append(label, body, meta);
    el.empty.hidden = true;
    el.messages.append(node);
    const message = { role, content, status: "done", node, body, meta };
    state.messages.push(message);
    scrollToEnd(true);
    return message;
  }

  function setStatus(message, status) {
    message.status = status;
    message.node.classList.toggle("streaming", status === "streaming");
    message.node.classList.toggle("stopped", status === "stopped");
    message.node.classList.toggle("error", status === "error");
    message.node.classList.toggle("done", status === "done");
    message.node.setAttribute("aria-busy", String(status === "streaming"));
  }

  function showReplyError(message, error, note) {
    const box = document.createElement("div");
    box.className = "msg-error";
    const title = document.createElement("strong");
    title.textContent = error.title;
    const detail = document.createElement("p");
    detail.textContent = error.message;
    box.append(title, detail);
    const hint = [error.hint, note].filter(Boolean).join(" ");
    if (hint) {
      const p = document.createElement("p");
      p.className = "msg-error-hint";
      p.textContent = hint;
      box.append(p);
    }
    message.node.insertBefore(box, message.meta);
  }

  function nearBottom() {
    const s = el.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
  }

  function scrollToEnd(force = false) {
    if (force || nearBottom()) el.scroller.scrollTop = el.scroller.scrollHeight;
  }

  const fmt = (n, digits = 1) =>
    n.toLocaleString(undefined, { minimumFractionDigits: digits, maximumFractionDigits: digits });

  function showStats(message, run) {
    const { usage, finish, status } = run;
    const tokens = usage ? usage.completion_tokens : run.deltas;
    const approx = usage ? "" : "≈ ";
    // Decode speed: tokens after the first over the time since the first (the first one's wait
    // is the prompt's processing, shown separately as time to first token).
    const span = run.tLast !== null && run.tFirst !== null ? (run.tLast - run.tFirst) / 1000 : 0;
    const speed = tokens > 1 && span > 0 ? (tokens - 1) / span : null;
    const ttft = run.tFirst !== null ? (run.tFirst - run.t0) / 1000 : null;

    el.usagePrompt.textContent = usage ? String(usage.prompt_tokens) : "–";
    el.usageCompletion.textContent = tokens ? `${approx}${tokens}` : "–";
    el.usageSpeed.textContent = speed !== null ? `${approx}${fmt(speed)} tok/s` : "–";
    el.usageTtft.textContent = ttft !== null ? `${fmt(ttft, 2)} s` : "–";

    const parts = [];
    if (status === "stopped") parts.push(badge("Stopped"));
    if (finish === "length") parts.push(badge("Max tokens reached"));
    if (usage) {
      parts.push(`${usage.prompt_tokens} prompt + ${usage.completion_tokens} completion tokens`);
    } else if (tokens) {
      parts.push(`${approx}${tokens} tokens`);
    }
    if (speed !== null) parts.push(`${approx}${fmt(speed)} tok/s`);
    message.meta.replaceChildren();
    parts.forEach((part, i) => {
      if (i > 0 && typeof parts[i - 1] === "string") message.meta.append(" · ");
      message.meta.append(part);
    });
  }

  function badge(text) {
    const node = document.createElement("span");
    node.className = "badge";
    node.textContent = text;
    return node;
  }

  function resetStats() {
    for (const node of [el.usagePrompt, el.usageCompletion, el.usageSpeed, el.usageTtft]) {
      node.textContent = "–";
    }
  }

  function setStreaming(on) {
    // Focus stays where it was (typing ahead is fine) unless its button is about to vanish.
    const focusedButton = document.activeElement === el.send || document.activeElement === el.stop;
    el.stop.hidden = !on;
    el.send.hidden = on;
    el.messages.setAttribute("aria-busy", String(on));
    if (focusedButton) (on ? el.stop : el.prompt).focus({ preventScroll: true });
  }

  // ---- Sending and streaming ---------------------------------------------------------------

  function readSettings() {
    const maxTokens = Number(el.maxTokens.value);
    const valid = Number.isInteger(maxTokens) && maxTokens >= 1;
    el.maxTokens.setAttribute("aria-invalid", String(!valid));
    if (!valid) {
      const detail = "Max tokens must be a whole number of at least 1.";
      showBanner(new ChatError("Check the settings", detail));
      el.maxTokens.focus();
      return null;
    }
    return {
      system: el.system.value.trim(),
      temperature: Number(el.temperature.value),
      maxTokens,
    };
  }

  function requestMessages(settings, reply) {
    const history = settings.system ? [{ role: "system", content: settings.system }] : [];
    for (const m of state.messages) {
      if (m === reply || m.status === "error" || m.content === "") continue;
      history.push({ role: m.role, content: m.content });
    }
    return history;
  }

  async function send() {
    if (state.turn) return;
    const text = el.prompt.value;
    if (!text.trim()) return;
    const settings = readSettings();
    if (!settings) return;
    if (!el.banner.hidden && state.modelId) hideBanner();
    el.prompt.value = "";
    autosize();

    const user = addMessage("user", text);
    const reply = addMessage("assistant", "");
    setStatus(reply, "streaming");
    const body = {
      messages: requestMessages(settings, reply),
      stream: true,
      stream_options: { include_usage: true },
      temperature: settings.temperature,
      max_tokens: settings.maxTokens,
    };
    if (state.modelId) body.model = state.modelId;

    // Times are performance.now() ms; deltas counts content chunks (≈ tokens, for stopped
    // replies, which get no usage chunk).
    const run = {
      t0: performance.now(),
      tFirst: null,
      tLast: null,
      deltas: 0,
      usage: null,
      finish: null,
      status: "done",
    };
    const turn = { controller: new AbortController(), reason: null };
    state.turn = turn;
    setStreaming(true);
    try {
      await streamReply(body, turn.controller.signal, reply, run);
      setStatus(reply, "done");
    } catch (err) {
      if (isAbort(err) || turn.controller.signal.aborted) {
        run.status = "stopped";
        setStatus(reply, "stopped");
      } else {
        const error =
          err instanceof ChatError ? err : new ChatError("Something went wrong", String(err));
        run.status = "error";
        // The failed turn leaves the conversation; the text goes back to the box for a retry.
        setStatus(user, "error");
        setStatus(reply, "error");
        showReplyError(reply, error, "Your message is back in the input box.");
        if (!el.prompt.value) {
          el.prompt.value = text;
          autosize();
        }
      }
    } finally {
      if (state.turn === turn) state.turn = null;
      if (turn.reason !== "reset") {
        showStats(reply, run);
        setStreaming(false);
        scrollToEnd();
      }
    }
  }

  async function streamReply(body, signal, reply, run) {
    let response;
    try {
      response = await fetch("v1/chat/completions", {
        method: "POST",
        headers: {
          "Content-Type": "application/json",
          Accept: "text/event-stream",
          ...authHeaders(),
        },
        body: JSON.stringify(body),
        signal,
      });
    } catch (err) {
      throw isAbort(err) ? err : networkError(err);
    }
    if (!response.ok) throw await errorFromResponse(response);
    if (!response.body) {
      throw new ChatError("No stream", "The browser gave no response body to read.");
    }

    const reader = response.body.getReader();
    const decoder = new TextDecoder("utf-8");
    const parser = new SSEParser();
    let finished = false; // [DONE] seen
    try {
      while (!finished) {
        let chunk;
        try {
          chunk = await reader.read();
        } catch (err) {
          if (isAbort(err) || signal.aborted) throw err;
          const detail = `The reply was cut off: ${err.message || err}`;
          throw new ChatError("The connection broke", detail);
        }
        const text = chunk.done ? decoder.decode() : decoder.decode(chunk.value, { stream: true });
        for (const data of parser.push(text)) {
          if (data === "[DONE]") {
            finished = true;
            break;
          }
          handleEvent(data, reply, run);
        }
        if (chunk.done) break;
      }
    } finally {
      reader.cancel().catch(() => {});
    }
    if (!finished && run.finish === null) {
      const detail = "The connection closed before the reply finished.";
      throw new ChatError("The reply was cut off", detail);
    }
  }

  function handleEvent(data, reply, run) {
    let event;
    try {
      event = JSON.parse(data);
    } catch {
      const detail = `The server sent an event that is not JSON: ${data.slice(0, 120)}`;
      throw new ChatError("Unreadable reply", detail);
    }
    if (event && event.error !== undefined) {
      const detail = messageOf(event) || "No details were given.";
      throw new ChatError("The server stopped with an error", detail);
    }
    for (const choice of event.choices || []) {
      if (choice.index !== 0) continue;
      const piece = choice.delta && choice.delta.content;
      if (piece) {
        const now = performance.now();
        if (run.tFirst === null) run.tFirst = now;
        run.tLast = now;
        run.deltas += 1;
        reply.content += piece;
        reply.body.append(piece); // a text node: never parsed as HTML
        scrollToEnd();
      }
      if (choice.finish_reason) run.finish = choice.finish_reason;
    }
    if (event.usage) run.usage = event.usage;
  }

  function stop() {
    if (!state.turn) return;
    state.turn.reason = "stop";
    state.turn.controller.abort();
  }

  function newChat() {
    if (state.turn) {
      // The aborted turn's own cleanup skips the page: it belongs to a conversation now gone.
      state.turn.reason = "reset";
      state.turn.controller.abort();
      state.turn = null;
      setStreaming(false);
    }
    state.messages = [];
    for (const node of el.messages.querySelectorAll(".msg")) node.remove();
    el.empty.hidden = false;
    resetStats();
    if (state.modelId) hideBanner();
    el.prompt.focus();
  }

  // ---- Composer and settings ---------------------------------------------------------------

  function autosize() {
    el.prompt.style.height = "auto";
    el.prompt.style.height = `${Math.min(el.prompt.scrollHeight, 220)}px`;
  }

  function saveSettings() {
    const settings = {
      system: el.system.value,
      temperature: el.temperature.value,
      maxTokens: el.maxTokens.value,
    };
    try {
      localStorage.setItem(SETTINGS_STORAGE, JSON.stringify(settings));
    } catch {
      /* storage disabled: settings just do not persist */
    }
  }

  function restoreSettings() {
    try {
      const saved = JSON.parse(localStorage.getItem(SETTINGS_STORAGE) || "null");
      if (saved) {
        if (typeof saved.system === "string") el.system.value = saved.system;
        if (saved.temperature !== undefined) el.temperature.value = saved.temperature;
        if (saved.maxTokens !== undefined) el.maxTokens.value = saved.maxTokens;
      }
      el.apiKey.value = sessionStorage.getItem(API_KEY_STORAGE) || "";
    } catch {
      /* storage disabled */
    }
    showTemperature();
  }

  function showTemperature() {
    el.temperatureValue.textContent = Number(el.temperature.value).toFixed(2);
  }

  function toggleSettings(open) {
    el.settingsToggle.setAttribute("aria-expanded", String(open));
    el.settings.classList.toggle("open", open);
  }

  let keyTimer = 0;
  function onApiKeyInput() {
    try {
      const key = el.apiKey.value.trim();
      if (key) sessionStorage.setItem(API_KEY_STORAGE, key);
      else sessionStorage.removeItem(API_KEY_STORAGE);
    } catch {
      /* storage disabled: the key lives in the field only */
    }
    clearTimeout(keyTimer);
    keyTimer = setTimeout(loadModel, 300);
  }

  function init() {
    restoreSettings();
    el.composer.addEventListener("submit", (event) => {
      event.preventDefault();
      send();
    });
    el.prompt.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        send();
      }
    });
    document.addEventListener("keydown", (event) => {
      if (event.key !== "Escape") return;
      if (state.turn) {
        event.preventDefault();
        stop();
      } else if (el.settings.classList.contains("open")) {
        toggleSettings(false);
        el.settingsToggle.focus();
      }
    });
    el.prompt.addEventListener("input", autosize);
    $("settings-form").addEventListener("submit", (event) => event.preventDefault());
    el.stop.addEventListener("click", stop);
    el.newChat.addEventListener("click", newChat);
    el.temperature.addEventListener("input", () => {
      showTemperature();
      saveSettings();
    });
    el.system.addEventListener("input", saveSettings);
    el.maxTokens.addEventListener("input", () => {
      el.maxTokens.removeAttribute("aria-invalid");
      saveSettings();
    });
    el.apiKey.addEventListener("input", onApiKeyInput);
    el.settingsToggle.addEventListener("click", () => {
      toggleSettings(el.settingsToggle.getAttribute("aria-expanded") !== "true");
    });
    for (const chip of document.querySelectorAll(".chip")) {
      chip.addEventListener("click", () => {
        el.prompt.value = chip.textContent;
        autosize();
        el.prompt.focus();
      });
    }
    loadModel();
    el.prompt.focus();
  }

  // For tests and the curious: the parser is a pure function of its input.
  window.serverRefChat = { SSEParser, state };
  init();
})();
