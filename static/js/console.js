/* The guest page's console: xterm.js over the console websocket (labs/consumers.py).
 *
 * Open: POST for a one-time ticket (CSRF header), then open the socket with it.
 * Binary frames carry the console's bytes both ways; text frames are JSON
 * ({"t": "hello"|"mode"|"event", ...}). Every word shown comes from the
 * #console element's data-msg-* attributes, translated by the template.
 * No inline script: this file is loaded with defer after xterm.js.
 */
(function () {
  "use strict";
  const root = document.getElementById("console");
  if (!root || !window.Terminal || !window.FitAddon) {
    return;
  }
  const msg = (name) => root.getAttribute("data-msg-" + name) || name;
  const part = (name) => root.querySelector('[data-console="' + name + '"]');
  const ui = {
    open: part("open"),
    disconnect: part("disconnect"),
    takeover: part("takeover"),
    copy: part("copy"),
    paste: part("paste"),
    status: part("status"),
    screen: part("screen"),
    text: part("text"),
    refresh: part("refresh-text"),
  };
  const remember = "xenpanel-console-" + root.dataset.guest;
  const encoder = new TextEncoder();
  const closeWords = { 4401: "signed-out", 4403: "bad-ticket", 4404: "not-found", 4503: "no-agent" };

  let term = null;
  let fit = null;
  let socket = null;
  let writable = false;
  let leaving = false;
  let sessionEnded = false;

  function status(text) {
    ui.status.textContent = text;
  }

  function show(element, visible) {
    if (element) {
      element.hidden = !visible;
    }
  }

  function line(text) {
    // A line of the panel's own, set apart from the console's output.
    if (term) {
      term.write("\r\n\x1b[1;33m[" + text + "]\x1b[0m\r\n");
    }
  }

  function socketUrl(ticket) {
    const base = root.dataset.wsUrl;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    let url;
    if (/^wss?:\/\//.test(base)) {
      url = base;
    } else if (base.startsWith(":")) {
      url = scheme + "//" + location.hostname + base; // same host name, another port (make run)
    } else {
      url = scheme + "//" + location.host + base;
    }
    return url + "console/" + root.dataset.guest + "/?ticket=" + encodeURIComponent(ticket);
  }

  function makeTerminal() {
    if (term) {
      return;
    }
    show(ui.screen, true);
    term = new window.Terminal({
      cursorBlink: true,
      scrollback: 5000,
      fontSize: 14,
      convertEol: false,
      rightClickSelectsWord: true,
    });
    fit = new window.FitAddon.FitAddon();
    term.loadAddon(fit);
    term.open(ui.screen);
    fit.fit();
    term.onData((data) => {
      if (socket && socket.readyState === WebSocket.OPEN && writable) {
        socket.send(encoder.encode(data));
      }
    });
    term.onResize((size) => sendResize(size.rows, size.cols));
    // Ctrl+Shift+C copies the selection; Ctrl+Shift+V is left to the browser, whose paste xterm.js takes.
    term.attachCustomKeyEventHandler((event) => {
      if (event.type === "keydown" && event.ctrlKey && event.shiftKey && (event.key === "C" || event.key === "c")) {
        copySelection();
        return false;
      }
      if (event.type === "keydown" && event.ctrlKey && event.shiftKey && (event.key === "V" || event.key === "v")) {
        return false;
      }
      return true;
    });
    let pending = null;
    window.addEventListener("resize", () => {
      clearTimeout(pending);
      pending = setTimeout(() => fit && fit.fit(), 100);
    });
  }

  function sendResize(rows, cols) {
    if (socket && socket.readyState === WebSocket.OPEN && writable) {
      socket.send(JSON.stringify({ t: "resize", rows: rows, cols: cols }));
    }
  }

  function copySelection() {
    const text = term ? term.getSelection() : "";
    if (text && navigator.clipboard) {
      navigator.clipboard.writeText(text).catch(() => {});
    }
  }

  function setMode(mode) {
    writable = mode === "rw";
    show(ui.takeover, !writable);
    show(ui.paste, writable);
  }

  function connected(open) {
    show(ui.open, !open);
    show(ui.disconnect, open);
    show(ui.copy, open);
    if (!open) {
      show(ui.takeover, false);
      show(ui.paste, false);
    }
  }

  function onEvent(name, detail) {
    if (name === "restarting") {
      line(msg("restarting"));
      status(msg("restarting"));
    } else if (name === "back") {
      line(msg("back"));
      status(writable ? msg("connected-rw") : msg("connected-ro"));
    } else if (name === "ended") {
      const text = msg("ended-" + (detail || "closed"));
      line(text);
      status(text);
      sessionEnded = true;
    } else if (name === "takeover") {
      line(msg("takeover").replace("{name}", detail));
    } else if (name === "no_agent") {
      line(msg("no-agent"));
    }
  }

  function onMessage(event) {
    if (typeof event.data !== "string") {
      term.write(new Uint8Array(event.data));
      return;
    }
    let message;
    try {
      message = JSON.parse(event.data);
    } catch (e) {
      return;
    }
    if (message.t === "hello") {
      setMode(message.mode);
      status(writable ? msg("connected-rw") : msg("connected-ro"));
      sendResize(term.rows, term.cols);
      term.focus();
    } else if (message.t === "mode") {
      setMode(message.mode);
      status(msg("took-over"));
      sendResize(term.rows, term.cols);
      term.focus();
    } else if (message.t === "event") {
      onEvent(message.e, message.a);
    }
  }

  function onClose(event) {
    socket = null;
    writable = false;
    connected(false);
    if (leaving) {
      status(msg("disconnected"));
      line(msg("disconnected"));
    } else if (closeWords[event.code]) {
      status(msg(closeWords[event.code]));
      line(msg(closeWords[event.code]));
      sessionStorage.removeItem(remember);
    } else if (!sessionEnded) {
      status(msg("lost"));
      line(msg("lost"));
    }
    leaving = false;
  }

  async function open() {
    if (socket) {
      return;
    }
    makeTerminal();
    status(msg("connecting"));
    ui.open.disabled = true;
    sessionEnded = false;
    let answer;
    try {
      const response = await fetch(root.dataset.ticketUrl, {
        method: "POST",
        headers: { "X-CSRFToken": root.dataset.csrf, Accept: "application/json" },
        credentials: "same-origin",
      });
      answer = await response.json().catch(() => ({}));
      if (!response.ok || !answer.ticket) {
        throw new Error(answer.error || (response.status === 404 ? msg("not-found") : msg("error")));
      }
    } catch (e) {
      ui.open.disabled = false;
      status(e.message || msg("error"));
      line(e.message || msg("error"));
      return;
    }
    ui.open.disabled = false;
    sessionStorage.setItem(remember, "open");
    socket = new WebSocket(socketUrl(answer.ticket));
    socket.binaryType = "arraybuffer";
    socket.addEventListener("open", () => connected(true));
    socket.addEventListener("message", onMessage);
    socket.addEventListener("close", onClose);
  }

  function disconnect() {
    sessionStorage.removeItem(remember);
    if (socket) {
      leaving = true;
      socket.close(1000);
    }
  }

  function refreshText() {
    // The last lines of the screen as plain text, for screen readers (aria-live off: read on demand).
    if (!term) {
      ui.text.textContent = msg("closed");
      return;
    }
    const buffer = term.buffer.active;
    const lines = [];
    const last = buffer.baseY + buffer.cursorY;
    for (let i = Math.max(0, last - 39); i <= last; i++) {
      const row = buffer.getLine(i);
      lines.push(row ? row.translateToString(true) : "");
    }
    ui.text.textContent = lines.join("\n").replace(/\s+$/, "");
  }

  ui.open.addEventListener("click", open);
  ui.disconnect.addEventListener("click", disconnect);
  ui.copy.addEventListener("click", copySelection);
  ui.refresh.addEventListener("click", refreshText);
  if (ui.paste) {
    ui.paste.addEventListener("click", () => {
      if (navigator.clipboard && navigator.clipboard.readText) {
        navigator.clipboard.readText().then((text) => term && term.paste(text)).catch(() => {});
      }
    });
  }
  if (ui.takeover) {
    ui.takeover.addEventListener("click", () => {
      if (socket && socket.readyState === WebSocket.OPEN) {
        socket.send(JSON.stringify({ t: "takeover" }));
      }
    });
  }
  // Open again after a reload: the scrollback comes back with it.
  if (sessionStorage.getItem(remember) === "open") {
    open();
  }
})();
