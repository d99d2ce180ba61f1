"use strict";
// The status page: /v1/status every 2 s, and one app's log followed with a
// streaming fetch. The session cookie goes along (same origin); the token
// itself is never visible to this script.
const nodeBody = document.querySelector("#node tbody");
const appsBody = document.querySelector("#apps tbody");
const logsPre = document.getElementById("logs");
const logsApp = document.getElementById("logs-app");
const errorBox = document.getElementById("error");
const maxLogChars = 200000;
let logApp = null;
let logCtl = null;

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : String(n)) + " " + units[i];
}

function duration(s) {
  s = Math.floor(s);
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
  return (d ? d + "d " : "") + (d || h ? h + "h " : "") + (d || h || m ? m + "m " : "") + (s % 60) + "s";
}

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function showError(msg) {
  errorBox.textContent = msg;
  errorBox.hidden = !msg;
}

function renderNode(n, os, follow, logs) {
  document.getElementById("hostname").textContent = n.hostname;
  const rows = [
    ["host name", n.hostname],
    ["up", duration(n.uptimeSeconds) + " (booted in " + n.bootSeconds.toFixed(1) + " s)"],
    ["kernel", n.kernel],
    ["node", n.nodeVersion],
    ["image", n.imageVersion],
    ["memory", bytes(n.memory.availableBytes) + " available of " + bytes(n.memory.totalBytes)],
    ["/data", bytes(n.data.freeBytes) + " free of " + bytes(n.data.totalBytes) + (n.data.persistent ? "" : " (not persistent: lost at reboot)")],
    ["addresses", (n.addresses || []).join(", ")],
    ["CPU time", n.cpuSecondsTotal.toFixed(1) + " s"],
    ["boot id", n.bootId],
  ];
  // OS update slots (docs/updates.md): one row per slot, and the last outcome.
  for (const sl of (os && os.slots) || []) {
    const img = sl.image ? sl.image.id + " (version " + sl.image.version + ")" : "-";
    rows.push(["slot " + sl.name.toUpperCase(), sl.state + (sl.booted ? ", booted" : "") + ": " + img]);
  }
  if (os && os.last) {
    rows.push(["last OS update", os.last.ok ? "to " + os.last.image.id + ": kept" : "to " + os.last.image.id + " failed: " + os.last.reason]);
  }
  // The followed tag (nodeboot.json "follow"; docs/follow.md).
  if (follow) {
    rows.push(["follows", follow.ref + ": " + follow.state]);
    rows.push(["last check", follow.lastCheck || "never"]);
    rows.push(["applied", (follow.applied || "none") + (follow.version ? " (" + follow.version + ")" : "")]);
    if (follow.target && follow.target !== follow.applied) rows.push(["tag names", follow.target]);
    if (follow.lastError) rows.push(["follow error", follow.lastError]);
  }
  // The remote log shipper (nodeboot.json "logs.remote"; docs/logs.md).
  if (logs) {
    rows.push(["remote logs", logs.endpoint + (logs.connected ? ": connected" : ": not connected")]);
    rows.push(["log buffer", logs.bufferedLines + " lines (" + bytes(logs.bufferedBytes) + " of " + bytes(logs.capBytes) + ") waiting, " +
      logs.delivered + " delivered, " + logs.dropped + " dropped"]);
    if (logs.lastError) rows.push(["log error", logs.lastError + (logs.lastErrorAt ? " (" + logs.lastErrorAt + ")" : "")]);
  }
  nodeBody.replaceChildren();
  for (const [k, v] of rows) {
    const tr = document.createElement("tr");
    const th = document.createElement("th");
    th.textContent = k;
    tr.appendChild(th);
    cell(tr, v);
    nodeBody.appendChild(tr);
  }
}

// appAPI says what the app told its node through require('nodeboot'):
// readiness, its watchdog and the restarts it caused, the locks it holds.
function appAPI(a) {
  const parts = [];
  if (a.ready) parts.push("ready");
  else if (a.health === "ready") parts.push("not ready");
  if (a.watchdogMs) parts.push("watchdog every " + a.watchdogMs / 1000 + " s");
  if (a.watchdogRestarts) parts.push(a.watchdogRestarts + " watchdog restart(s)");
  for (const l of a.locks || []) {
    parts.push((l.overridden ? "lock OVERRIDDEN: " : "lock: ") + l.reason + " (since " + l.since + ")");
  }
  if (a.lastLockOverride) parts.push("last override: " + a.lastLockOverride);
  return parts.join("; ");
}

function renderApps(apps) {
  appsBody.replaceChildren();
  for (const a of apps) {
    const tr = document.createElement("tr");
    tr.dataset.app = a.name;
    if (a.name === logApp) tr.className = "selected";
    cell(tr, a.name, "name");
    cell(tr, a.state, "state state-" + a.state);
    cell(tr, a.pid ? String(a.pid) : "", "pid");
    cell(tr, String(a.restarts), "restarts");
    cell(tr, a.version + (a.previousVersion ? " (previous " + a.previousVersion + ")" : ""), "version");
    cell(tr, a.port ? String(a.port) : "", "port");
    cell(tr, a.startedAt, "started");
    cell(tr, a.lastExit, "last-exit");
    cell(tr, appAPI(a), "app-api");
    const td = cell(tr, "");
    const b = document.createElement("button");
    b.type = "button";
    b.className = "show-logs";
    b.textContent = "log";
    b.addEventListener("click", () => followLogs(a.name));
    td.appendChild(b);
    appsBody.appendChild(tr);
  }
  if (logApp === null && apps.length > 0) followLogs(apps[0].name);
}

async function refresh() {
  try {
    const r = await fetch("/v1/status", { credentials: "same-origin", cache: "no-store" });
    if (r.status === 401) { location.reload(); return; } // the session is gone: the login form
    if (!r.ok) throw new Error("HTTP " + r.status + ": " + (await r.text()));
    const st = await r.json();
    renderNode(st.node, st.os, st.follow, st.logs);
    renderApps(st.apps);
    showError("");
  } catch (e) {
    showError("cannot read the node's status: " + e.message);
  }
  setTimeout(refresh, 2000);
}

function appendLog(text) {
  const atBottom = logsPre.scrollTop + logsPre.clientHeight >= logsPre.scrollHeight - 4;
  let all = logsPre.textContent + text;
  if (all.length > maxLogChars) all = all.slice(all.length - maxLogChars);
  logsPre.textContent = all;
  if (atBottom) logsPre.scrollTop = logsPre.scrollHeight;
}

async function followLogs(app) {
  if (logCtl) logCtl.abort();
  const ctl = new AbortController();
  logCtl = ctl;
  logApp = app;
  logsApp.textContent = app;
  logsPre.textContent = "";
  for (const tr of appsBody.querySelectorAll("tr")) tr.classList.toggle("selected", tr.dataset.app === app);
  try {
    const r = await fetch("/v1/apps/" + encodeURIComponent(app) + "/logs?follow=1&lines=50",
      { credentials: "same-origin", cache: "no-store", signal: ctl.signal });
    if (!r.ok) throw new Error("HTTP " + r.status);
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      appendLog(value);
    }
    appendLog("[the log stream ended; reconnecting]\n");
  } catch (e) {
    if (ctl.signal.aborted) return;
    appendLog("[the log stream broke: " + e.message + "; reconnecting]\n");
  }
  setTimeout(() => { if (logCtl === ctl) followLogs(app); }, 2000);
}

refresh();
