'use strict';
// require('nodeboot'): the app's node, over the unix socket PID 1 serves
// for this app ($NODEBOOT_SOCKET). The protocol is newline-delimited JSON
// (docs/js.md in the nodeboot repository). No dependencies.

const net = require('node:net');

const SOCKET_ENV = 'NODEBOOT_SOCKET';

/** An error the node answered with; code is the protocol's code. */
class NodebootError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'NodebootError';
    this.code = code;
  }
}

function notOnNode() {
  return new NodebootError('ENOTNODEBOOT',
    'not running on a nodeboot node: $' + SOCKET_ENV + ' is not set. require(\'nodeboot\') works everywhere, ' +
    'but its calls need a node (nodeboot run ./app boots one); check isNode() first to run without one');
}

/** True when this process runs as an app of a nodeboot node. */
function isNode() {
  return Boolean(process.env[SOCKET_ENV]);
}

// One connection to PID 1. What a connection sets up (readiness, a
// watchdog, a lock, shutdown handlers) lasts as long as it does.
class Connection {
  constructor() {
    const path = process.env[SOCKET_ENV];
    if (!path) throw notOnNode();
    this.pending = new Map();
    this.nextId = 1;
    this.buf = '';
    this.closed = null; // the error that ended it
    this.onPush = null;
    this.held = false; // an events() iteration holds the event loop
    this.sock = net.createConnection(path);
    this.sock.setEncoding('utf8');
    this.sock.unref(); // never keeps the app alive by itself
    this.sock.on('data', (chunk) => this._data(chunk));
    this.sock.on('error', (err) => this._end(new NodebootError(err.code || 'EIO',
      'the node\'s socket ' + path + ': ' + err.message)));
    this.sock.on('close', () => this._end(new NodebootError('ECLOSED', 'the connection to the node closed')));
  }

  _data(chunk) {
    this.buf += chunk;
    let i;
    while ((i = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, i);
      this.buf = this.buf.slice(i + 1);
      let msg;
      try {
        msg = JSON.parse(line);
      } catch (e) {
        continue;
      }
      if (msg.id && this.pending.has(msg.id)) {
        const p = this.pending.get(msg.id);
        this.pending.delete(msg.id);
        this._refs();
        if (msg.error) p.reject(new NodebootError(msg.error.code, msg.error.message));
        else p.resolve(msg.result);
      } else if (msg.error) {
        // Refused at connect (not an app, too many connections).
        this._end(new NodebootError(msg.error.code, msg.error.message));
        this.sock.destroy();
      } else if (this.onPush) {
        this.onPush(msg);
      }
    }
  }

  _end(err) {
    if (this.closed) return;
    this.closed = err;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    if (this.onClose) this.onClose(err);
  }

  // The socket holds the event loop only while an answer is awaited, or
  // while an events() iteration runs.
  _refs() {
    if (this.pending.size > 0 || this.held) this.sock.ref();
    else this.sock.unref();
  }

  call(op, fields) {
    if (this.closed) return Promise.reject(this.closed);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this._refs();
      this.sock.write(JSON.stringify(Object.assign({ id, op }, fields)) + '\n');
    });
  }

  close() {
    this.sock.end();
  }
}

let shared = null;
function conn() {
  if (!isNode()) throw notOnNode();
  if (!shared || shared.closed) {
    shared = new Connection();
    shared.onPush = push;
  }
  return shared;
}

function call(op, fields) {
  try {
    return conn().call(op, fields);
  } catch (err) {
    return Promise.reject(err);
  }
}

/** The node and this app: hostname, image, versions, uptime, memory, addresses, slots, app name/version/dataDir. */
function info() {
  return call('info');
}

/** Tells the node this app is ready: deploys and updates of an app with "health": "ready" wait for it. */
function ready() {
  return call('ready').then(() => undefined);
}

let watchdogTimer = null;
/**
 * Arms PID 1's watchdog: the app is restarted when its event loop has not
 * sent a keep-alive for two intervals (a hung loop that still holds its
 * port). Keep-alives go every intervalMs/2 from a timer of this module.
 */
async function watchdog(intervalMs) {
  if (!Number.isInteger(intervalMs) || intervalMs < 0) {
    throw new TypeError('watchdog(intervalMs): a whole number of milliseconds, 0 to turn it off');
  }
  if (watchdogTimer) clearInterval(watchdogTimer);
  watchdogTimer = null;
  await call('watchdog', { intervalMs });
  if (intervalMs > 0) {
    watchdogTimer = setInterval(() => { call('keepalive').catch(() => {}); }, Math.max(1, Math.floor(intervalMs / 2)));
    watchdogTimer.unref();
  }
  return { stop: () => watchdog(0) };
}

const shutdownHandlers = [];
/**
 * Runs fn before the app gets SIGTERM (deploy, update, restart, reboot,
 * power-off), so it can drain; the stop waits for it, at most timeoutMs
 * (default 10 s, at most 60 s).
 */
function onShutdown(fn, opts) {
  if (typeof fn !== 'function') throw new TypeError('onShutdown(fn): fn must be a function');
  const timeoutMs = (opts && opts.timeoutMs) || 0;
  shutdownHandlers.push(fn);
  return call('onShutdown', timeoutMs ? { timeoutMs } : {}).then(() => undefined);
}

function push(msg) {
  if (msg.shutdown) {
    const reason = msg.shutdown.reason;
    Promise.allSettled(shutdownHandlers.map((fn) => Promise.resolve().then(() => fn(reason))))
      .then(() => call('shutdownDone').catch(() => {}));
  }
}

/**
 * Holds off deploys, updates and reboots that affect this app until
 * release() (at most the app's maxLockSeconds; then they proceed and the
 * node's status says the lock was overridden). Each lock is its own
 * connection: it ends with the process, whatever happens.
 */
async function lock(reason) {
  if (!isNode()) throw notOnNode();
  const c = new Connection();
  const res = await c.call('lock', { reason: String(reason || '') });
  let released = false;
  return {
    maxSeconds: res.maxSeconds,
    async release() {
      if (released) return;
      released = true;
      try {
        await c.call('release');
      } finally {
        c.close();
      }
    },
  };
}

/** The node's apps: name, port, url, state, ready. */
function services() {
  return call('services');
}

/** One app of the node by name; rejects with code not_found when there is none. */
function service(name) {
  return call('service', { name });
}

/** This app's secret name (set with `nodeboot secret set NODE APP NAME`). */
function secret(name) {
  return call('secret', { name }).then((r) => r.value);
}

/** Node events (deploy, update, network, clock, memory, lock-overridden) as an async iterator; iterating keeps the process alive. */
function events() {
  return {
    [Symbol.asyncIterator]() {
      if (!isNode()) throw notOnNode();
      const c = new Connection();
      const queue = [];
      const waiting = [];
      let done = null;
      c.onPush = (msg) => {
        if (!msg.event) return;
        if (waiting.length) waiting.shift().resolve({ value: msg.event, done: false });
        else queue.push(msg.event);
      };
      c.onClose = (err) => {
        done = err;
        while (waiting.length) waiting.shift().reject(err);
      };
      const subscribed = c.call('events');
      // Iterating keeps the process alive, as a server would (past the
      // subscription's answer, which would otherwise let go of it).
      c.held = true;
      c._refs();
      return {
        async next() {
          await subscribed;
          if (queue.length) return { value: queue.shift(), done: false };
          if (done) throw done;
          return new Promise((resolve, reject) => waiting.push({ resolve, reject }));
        },
        async return() {
          c.held = false;
          c.close();
          c.sock.unref();
          return { value: undefined, done: true };
        },
      };
    },
  };
}

module.exports = {
  isNode, info, ready, watchdog, onShutdown, lock, services, service, secret, events,
  NodebootError, SOCKET_ENV,
};
