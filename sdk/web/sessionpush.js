// sessionpush web SDK: one session per tab over one websocket.
//
// An ES module with no dependencies, served by the gateway as written at
// /sdk/sessionpush.js (and minified at /sdk/sessionpush.min.js). The wire
// protocol is docs/protocol.md; sessionpush/client/ is the same client in
// Python, and the two keep the same rules:
//
// - events are numbered (seq) when tracked and kept until an ack covers
//   them; the gateway applies each number at most once per session, so
//   whatever was in flight when a socket died is simply sent again;
// - frames leave in batches: at once when 20 wait, else 50 ms after the
//   first, paced under the gateway's rate limit (50 a second, bursts of
//   200), because a frame dropped there would be overtaken and lost;
// - offline, frames wait in a bounded buffer (the oldest event is dropped
//   and counted);
// - a lost socket is reopened after a jittered exponential backoff, with
//   the session id, which resumes the session inside the grace period.

const FINAL = [4003, 4004, 4005]; // refused for good: do not reconnect
const OVER = [1000, 4001]; // the session is over; the next frame opens one

let opts = null;
let ws = null;
let session = null;
let live = false; // this socket was welcomed: answers belong to inflight
let resumed = false;
let nextSeq = 1;
let unsent = [];
let inflight = [];
let dropped = 0;
let attempts = 0;
let retry = null;
let batch = null;
let stopped = false;
let tokens = 200;
let stamp = 0;
const listeners = { message: [], welcome: [], refused: [], close: [] };

function base() {
  return opts.url.replace(/^ws/, "http").replace(/\/(v1\/session)?\/?$/, "");
}

function stored(key, make) {
  // Private modes and sandboxed frames may refuse storage: then the id
  // lives as long as the page.
  try {
    let value = localStorage.getItem(key);
    if (!value) localStorage.setItem(key, (value = make()));
    return value;
  } catch {
    return make();
  }
}

function randomId() {
  return crypto.randomUUID().replace(/-/g, "");
}

function emit(kind, value) {
  for (const fn of listeners[kind]) fn(value);
}

/** Start the tab's session. `token` (a string, or a function returning a
 * promise of one) with `user`, or the app's public `key` for an anonymous
 * visitor, whose id is kept in localStorage unless `anonymousId` names it. */
export function init(options) {
  if (opts) throw new Error("sessionpush: init() was called already");
  opts = {
    app: "default",
    batchSize: 20,
    batchDelay: 50,
    bufferLimit: 1000,
    serviceWorker: "/sw.js",
    showMessages: true,
    ...options,
  };
  if (!opts.url) throw new Error("sessionpush: init() needs the gateway's url");
  opts.user =
    opts.user || opts.anonymousId || stored("sessionpush:anon", randomId);
  opts.device = {
    id: stored("sessionpush:device", randomId),
    platform: "web",
    timezone: Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC",
    lang: navigator.language,
    ...opts.device,
  };
  if (opts.onMessage) on("message", opts.onMessage);
  else if (opts.showMessages) on("message", showMessage);
  addEventListener("pagehide", () => end());
  addEventListener("pageshow", (e) => e.persisted && connect());
  addEventListener("online", () => ws || reconnectNow());
  addEventListener("visibilitychange", () => {
    // A hidden tab's timers are throttled: send what waits now.
    if (document.visibilityState === "hidden") flush();
  });
  connect();
}

/** Subscribe to "message" (in-app messages), "welcome", "refused"
 * (a frame the gateway refused, with its error) or "close". */
export function on(kind, fn) {
  listeners[kind].push(fn);
}

/** Queue an event; returns its sequence number. */
export function track(name, props = {}) {
  return numbered({ type: "event", name, props });
}

/** Queue a screen view: the event "screen" with `name` in its props. */
export function screen(name, props = {}) {
  return numbered({ type: "screen", name, props });
}

/** The visitor is now `userId`; `traits` go to the profile (`user.*`).
 * Outside development mode another user needs a `token` for that user. */
export function identify(userId, traits = {}, token) {
  const frame = { type: "identify", user: userId, traits };
  if (token) frame.token = opts.token = token;
  opts.user = userId;
  queue(frame);
}

/** End the session now (post-session rules start). The next event
 * opens a new session. */
export function end() {
  if (!live) return;
  send(unsent.length);
  ws.send(JSON.stringify({ type: "end", ts: Date.now() }));
  session = null;
  // What was sent before `end` is applied before it; nothing to resend.
  unsent = [];
  inflight = [];
}

/** Ask for notification permission, subscribe with the app's VAPID key
 * and register the subscription; resolves to it, or null if refused. */
export async function requestPush() {
  if (!("serviceWorker" in navigator) || !("PushManager" in window)) {
    throw new Error("sessionpush: this browser has no Web Push");
  }
  if ((await Notification.requestPermission()) !== "granted") return null;
  const worker = new URL(opts.serviceWorker, location.href);
  worker.searchParams.set("gateway", base());
  const registration = await navigator.serviceWorker.register(worker.href);
  await activated(registration);
  const answer = await fetch(
    `${base()}/v1/vapid-public-key?app=${encodeURIComponent(opts.app)}`,
  );
  if (!answer.ok) throw new Error("sessionpush: the gateway has no VAPID key");
  const { publicKey } = await answer.json();
  const manager = registration.pushManager;
  const subscription =
    (await manager.getSubscription()) ||
    (await manager.subscribe({
      userVisibleOnly: true,
      applicationServerKey: bytes(publicKey),
    }));
  queue({ type: "subscribe", channel: "webpush", subscription: subscription.toJSON() });
  return subscription;
}

/** What the SDK holds, for tests and debugging. */
export function state() {
  return {
    session,
    resumed,
    connected: live,
    unsent: unsent.length,
    inflight: inflight.length,
    dropped,
    nextSeq,
  };
}

function activated(registration) {
  const worker = registration.installing || registration.waiting;
  if (!worker) return Promise.resolve();
  return new Promise((done) => {
    worker.addEventListener("statechange", () => {
      if (worker.state === "activated") done();
    });
  });
}

function bytes(b64url) {
  const text = atob(b64url.replace(/-/g, "+").replace(/_/g, "/"));
  return Uint8Array.from(text, (c) => c.charCodeAt(0));
}

function numbered(frame) {
  frame.seq = nextSeq++;
  frame.ts = Date.now();
  queue(frame);
  return frame.seq;
}

function queue(frame) {
  if (!opts) throw new Error("sessionpush: call init() first");
  unsent.push(frame);
  while (unsent.length + inflight.length > opts.bufferLimit && dropOldest());
  if (!ws) connect();
  else if (unsent.length >= opts.batchSize) flush();
  else batch = batch || setTimeout(flush, opts.batchDelay);
}

function dropOldest() {
  for (const line of [inflight, unsent]) {
    const i = line.findIndex((f) => f.seq !== undefined);
    if (i >= 0) {
      line.splice(i, 1);
      dropped++;
      return true;
    }
  }
  return false;
}

function flush() {
  clearTimeout(batch);
  batch = null;
  if (!live) return;
  const now = Date.now();
  tokens = Math.min(200, tokens + ((now - stamp) * 50) / 1000);
  stamp = now;
  send(Math.min(unsent.length, Math.floor(tokens)));
  if (unsent.length) batch = setTimeout(flush, Math.max(20, 1000 / 50));
}

function send(count) {
  for (const frame of unsent.splice(0, count)) {
    inflight.push(frame);
    tokens--;
    ws.send(JSON.stringify(frame));
  }
}

async function hello() {
  const frame = { type: "hello", user: opts.user, app: opts.app, device: opts.device };
  if (session) frame.session = session;
  const token = typeof opts.token === "function" ? await opts.token() : opts.token;
  if (token) frame.token = token;
  if (opts.key) frame.key = opts.key;
  return JSON.stringify(frame);
}

function connect() {
  if (ws || stopped || !opts) return;
  clearTimeout(retry);
  const url = new URL(`${base().replace(/^http/, "ws")}/v1/session`);
  url.searchParams.set("app", opts.app);
  const socket = (ws = new WebSocket(url));
  socket.onopen = async () => socket.send(await hello());
  socket.onmessage = (e) => receive(JSON.parse(e.data));
  socket.onclose = (e) => closed(socket, e.code);
}

function receive(frame) {
  if (frame.type === "welcome") {
    session = frame.session;
    resumed = frame.resumed;
    live = true;
    attempts = 0;
    // Send again what was in flight, minus what the gateway applied.
    const applied = frame.seq;
    const again = inflight.filter((f) => f.seq === undefined || applied == null || f.seq > applied);
    inflight = [];
    unsent = again.concat(unsent);
    emit("welcome", frame);
    flush();
  } else if (frame.type === "message") {
    emit("message", frame);
  } else if (frame.type === "error" && frame.code === "token_expired") {
    if (typeof opts.token === "function") {
      opts.token().then((token) => queue({ type: "refresh", token }));
    }
  } else if (live && (frame.type === "ack" || frame.type === "error")) {
    // Answers come in the order of the frames: this one is the oldest's.
    const item = inflight.shift();
    if (frame.type === "error") emit("refused", { frame: item, error: frame });
  }
}

function closed(socket, code) {
  if (ws !== socket) return;
  ws = null;
  live = false;
  emit("close", code);
  if (FINAL.includes(code)) {
    stopped = true;
    return;
  }
  if (OVER.includes(code)) {
    session = null;
    if (unsent.length || inflight.length) connect();
    return;
  }
  // Half to all of min(30 s, 0.5 s * 2^n): clients dropped together
  // (a gateway restart) come back spread out, not in one wave.
  const ceiling = Math.min(30000, 500 * 2 ** attempts++);
  retry = setTimeout(connect, ceiling / 2 + (Math.random() * ceiling) / 2);
}

function reconnectNow() {
  attempts = 0;
  connect();
}

function showMessage(message) {
  const box = document.createElement("div");
  box.className = "sessionpush-message";
  box.setAttribute("role", "status");
  box.style.cssText =
    "position:fixed;bottom:16px;right:16px;max-width:320px;padding:12px 16px;" +
    "background:#fff;color:#111;border-radius:8px;z-index:2147483647;" +
    "box-shadow:0 2px 12px rgba(0,0,0,.25);font:14px/1.4 system-ui,sans-serif";
  const title = document.createElement("strong");
  title.textContent = message.title;
  box.append(title);
  if (message.body) {
    const body = document.createElement("p");
    body.style.margin = "4px 0 0";
    body.textContent = message.body;
    box.append(body);
  }
  const link = message.link && new URL(message.link, location.href);
  if (link && /^https?:$/.test(link.protocol)) {
    const a = document.createElement("a");
    a.href = link.href;
    a.textContent = "Open";
    a.style.cssText = "display:inline-block;margin-top:6px";
    box.append(a);
  }
  const close = document.createElement("button");
  close.textContent = "×";
  close.setAttribute("aria-label", "Close");
  close.style.cssText = "position:absolute;top:4px;right:6px;border:0;background:none";
  close.onclick = () => box.remove();
  box.append(close);
  document.body.append(box);
}
