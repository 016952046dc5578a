// Latchkey's demo web chat. Plain JavaScript, no build step, no external
// resources: it talks to the JSON API documented in the README ("Web chat").
// Everything the server sends is shown with textContent, never as HTML.
"use strict";

(function () {
  const POLL_MS = 1500;
  const $ = (id) => document.getElementById(id);
  const log = $("log");
  let lastSeq = 0;
  let pollTimer = null;
  let polling = false;

  function notice(text, isError) {
    const box = $("notice");
    box.textContent = text;
    box.classList.toggle("error", !!isError);
    box.hidden = false;
  }

  async function api(method, path, body) {
    const options = { method, headers: { "Accept": "application/json" }, credentials: "same-origin", cache: "no-store" };
    if (method !== "GET") {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body || {});
    }
    const response = await fetch(path, options);
    let data = null;
    try { data = await response.json(); } catch (_) { data = null; }
    return { status: response.status, data };
  }

  function errorText(result) {
    const e = result.data && result.data.error;
    return e && e.message ? e.message : "Something went wrong (HTTP " + result.status + ").";
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function clock(at) {
    const d = new Date(at * 1000);
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  // Inserts an event's element in sequence order (events can arrive both in
  // a POST's answer and from polling).
  function place(seq, item) {
    item.dataset.seq = String(seq);
    for (const other of log.children) {
      if (Number(other.dataset.seq) > seq) {
        log.insertBefore(item, other);
        return;
      }
    }
    log.appendChild(item);
    item.scrollIntoView({ block: "nearest" });
  }

  function safeUrl(url) {
    try {
      const parsed = new URL(url, window.location.href);
      return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
    } catch (_) {
      return null;
    }
  }

  function render(event) {
    if (log.querySelector('[data-seq="' + event.seq + '"]')) return;
    const item = el("li", event.type);
    const body = el("div", "body");
    item.appendChild(body);
    switch (event.type) {
      case "user-message":
      case "bot-message":
      case "progress":
        body.textContent = event.text;
        break;
      case "step-up": {
        body.remove();
        const actions = el("div", "actions step-up");
        const url = safeUrl(event.url);
        if (url) {
          const link = el("a", "button", "Approve the sign-in");
          link.href = url;
          link.rel = "noopener noreferrer";
          actions.appendChild(link);
        }
        item.appendChild(actions);
        break;
      }
      case "code-sent":
        body.textContent = "I sent a one-time code to " + event.to + ". Type it here when it arrives.";
        break;
      case "secret": {
        body.textContent = event.label;
        const actions = el("div", "actions secret");
        const show = el("button", "", "Show it (once)");
        show.type = "button";
        show.addEventListener("click", () => revealSecret(event.secret_id, actions, show));
        actions.appendChild(show);
        item.appendChild(actions);
        break;
      }
      case "approval-request": {
        const what = event.kind === "manager-confirmation"
          ? "Please confirm it is really " + event.requester + " asking: "
          : "Approval needed for " + event.requester + ": ";
        body.textContent = what + event.reason;
        const actions = el("div", "actions approval");
        actions.dataset.request = event.request_id;
        const approve = el("button", "approve", event.kind === "manager-confirmation" ? "Yes, it's them" : "Approve");
        const deny = el("button", "deny", event.kind === "manager-confirmation" ? "No" : "Deny");
        for (const [button, yes] of [[approve, true], [deny, false]]) {
          button.type = "button";
          button.addEventListener("click", () => answerRequest(event.request_id, yes, actions));
          actions.appendChild(button);
        }
        const expires = el("span", "small", "Answer by " + clock(event.expires_at));
        actions.appendChild(expires);
        item.appendChild(actions);
        break;
      }
      case "request-answered": {
        body.textContent = event.approved ? "Approved." : "Declined.";
        for (const actions of log.querySelectorAll(".actions.approval")) {
          if (actions.dataset.request === event.request_id) {
            for (const button of actions.querySelectorAll("button")) button.disabled = true;
          }
        }
        break;
      }
      case "resolved":
        body.textContent = event.summary;
        break;
      case "cancelled":
        body.textContent = "Stopped. Nothing more will happen; write again whenever you like.";
        break;
      case "escalated":
        body.textContent = "Passed to your IT service desk: " + event.reason;
        break;
      default:
        return;
    }
    const time = el("span", "time", clock(event.at));
    item.appendChild(time);
    place(event.seq, item);
  }

  function take(events) {
    for (const event of events || []) {
      render(event);
      if (event.seq > lastSeq) lastSeq = event.seq;
    }
  }

  async function revealSecret(id, actions, button) {
    button.disabled = true;
    const result = await api("POST", "/api/secrets/" + encodeURIComponent(id));
    if (result.status === 200 && result.data && typeof result.data.value === "string") {
      button.remove();
      const value = el("code", "secret-value", result.data.value);
      actions.appendChild(value);
      actions.appendChild(el("span", "small", "Shown once: it will not be shown again. You will choose your own at your next sign-in."));
    } else if (result.status === 404) {
      button.remove();
      actions.appendChild(el("span", "small", "Already shown once; it is not shown again."));
    } else {
      button.disabled = false;
      notice(errorText(result), true);
    }
  }

  async function answerRequest(id, approve, actions) {
    for (const button of actions.querySelectorAll("button")) button.disabled = true;
    const result = await api("POST", "/api/requests/" + encodeURIComponent(id), { approve });
    if (result.status === 200) {
      take(result.data.events);
    } else {
      for (const button of actions.querySelectorAll("button")) button.disabled = false;
      notice(errorText(result), true);
    }
  }

  async function poll() {
    if (polling) return;
    polling = true;
    try {
      const result = await api("GET", "/api/events?after=" + lastSeq);
      if (result.status === 200) {
        take(result.data.events);
      } else if (result.status === 401) {
        signedOut("Your session ended. Sign in again to carry on.");
      }
    } catch (_) {
      // The host is restarting or the network blinked: the next poll retries.
    } finally {
      polling = false;
    }
  }

  function signedOut(message) {
    if (pollTimer) clearInterval(pollTimer);
    pollTimer = null;
    $("chat").hidden = true;
    $("sign-out").hidden = true;
    $("who").textContent = "";
    $("signed-out").hidden = false;
    if (message) notice(message, false);
  }

  function signedIn(me) {
    $("signed-out").hidden = true;
    $("chat").hidden = false;
    $("sign-out").hidden = false;
    $("who").textContent = me.display_name;
    poll();
    pollTimer = setInterval(poll, POLL_MS);
    $("text").focus();
  }

  $("composer").addEventListener("submit", async (e) => {
    e.preventDefault();
    const input = $("text");
    const text = input.value.trim();
    if (!text) return;
    $("send").disabled = true;
    try {
      const result = await api("POST", "/api/messages", { text });
      if (result.status === 200) {
        input.value = "";
        take(result.data.events);
      } else if (result.status === 401) {
        signedOut("Your session ended. Sign in again to carry on.");
      } else {
        notice(errorText(result), true);
      }
    } finally {
      $("send").disabled = false;
      input.focus();
    }
  });

  $("sign-out").addEventListener("click", async () => {
    await api("POST", "/api/logout");
    log.textContent = "";
    lastSeq = 0;
    signedOut("Signed out.");
  });

  async function start() {
    if (window.location.hash === "#verified") {
      notice("Verified: thank you. Carry on here.", false);
    }
    if (window.location.hash || window.location.search) {
      history.replaceState(null, "", "/");
    }
    const me = await api("GET", "/api/me");
    if (me.status === 200) {
      signedIn(me.data);
    } else {
      signedOut(null);
    }
  }

  start();
})();
