'use strict';
// The compatibility suite's app (e2e/compat_test.go): every check uses an
// ordinary npm package or Node API the way apps do, and /checks reports
// each one's result. It has no "shell": true, so its shell check expects
// the failure the docs describe.
const http = require('http');
const path = require('path');
const fs = require('fs');
const cp = require('child_process');
const { Worker } = require('worker_threads');

if (process.argv[2] === '--child') {
  // child_process.fork: answer over the IPC channel.
  process.on('message', (m) => { process.send({ echo: m, pid: process.pid }); process.exit(0); });
  return;
}

const dataDir = process.env.NODEBOOT_DATA_DIR;

// A local HTTP server for fetch/undici and ws.
function localServer() {
  return new Promise((resolve) => {
    const srv = http.createServer((req, res) => res.end(JSON.stringify({ path: req.url })));
    const { WebSocketServer } = require('ws');
    const wss = new WebSocketServer({ server: srv });
    wss.on('connection', (ws) => ws.on('message', (m) => ws.send('echo:' + m)));
    srv.listen(0, '127.0.0.1', () => resolve(srv));
  });
}

const checks = {
  async sharp() {
    const sharp = require('sharp');
    const png = await sharp({ create: { width: 64, height: 48, channels: 3, background: { r: 200, g: 10, b: 10 } } }).png().toBuffer();
    const out = await sharp(png).resize(16, 12).jpeg().toBuffer();
    const meta = await sharp(out).metadata();
    return `${meta.format} ${meta.width}x${meta.height}`;
  },
  async argon2() {
    const argon2 = require('argon2');
    const hash = await argon2.hash('correct horse', { timeCost: 2, memoryCost: 4096 });
    return { prefix: hash.slice(0, 9), ok: await argon2.verify(hash, 'correct horse'), bad: await argon2.verify(hash, 'wrong') };
  },
  async sqlite() {
    const Database = require('better-sqlite3');
    const db = new Database(path.join(dataDir, 'compat.db'));
    db.pragma('journal_mode = WAL');
    db.exec('CREATE TABLE IF NOT EXISTS t (n INTEGER)');
    db.prepare('INSERT INTO t VALUES (?)').run(42);
    const row = db.prepare('SELECT SUM(n) AS s, COUNT(*) AS c FROM t').get();
    db.close();
    return { file: path.join(dataDir, 'compat.db'), sum: row.s, count: row.c };
  },
  async ws() {
    const WebSocket = require('ws');
    const srv = await localServer();
    try {
      return await new Promise((resolve, reject) => {
        const ws = new WebSocket(`ws://127.0.0.1:${srv.address().port}/`);
        ws.on('open', () => ws.send('ping'));
        ws.on('message', (m) => { ws.close(); resolve(String(m)); });
        ws.on('error', reject);
      });
    } finally { srv.close(); }
  },
  async fetch() {
    const srv = await localServer();
    try {
      const url = `http://127.0.0.1:${srv.address().port}/x`;
      const a = await (await fetch(url)).json();
      const { request } = require('undici');
      const b = await (await request(url + 'y')).body.json();
      return [a.path, b.path];
    } finally { srv.close(); }
  },
  async fork() {
    return await new Promise((resolve, reject) => {
      const child = cp.fork(__filename, ['--child']);
      child.on('message', (m) => resolve(m.echo));
      child.on('error', reject);
      child.send('over ipc');
    });
  },
  async execFileNode() {
    return await new Promise((resolve, reject) => {
      cp.execFile(process.execPath, ['-p', '6*7'], (err, out) => (err ? reject(err) : resolve(out.trim())));
    });
  },
  async worker() {
    return await new Promise((resolve, reject) => {
      const w = new Worker('require("worker_threads").parentPort.postMessage(require("crypto").createHash("sha256").update("x").digest("hex").slice(0, 8))', { eval: true });
      w.on('message', resolve);
      w.on('error', reject);
    });
  },
  async intl() {
    const d = new Date(Date.UTC(2024, 0, 15, 12));
    return {
      de: new Intl.DateTimeFormat('de-DE', { month: 'long', timeZone: 'UTC' }).format(d),
      ja: new Intl.NumberFormat('ja-JP', { style: 'currency', currency: 'JPY' }).format(1234),
      tz: new Intl.DateTimeFormat('en-US', { timeZone: 'Asia/Kolkata', hour: 'numeric', hourCycle: 'h23' }).format(d),
      icu: typeof process.versions.icu === 'string',
    };
  },
  async webcrypto() {
    const { subtle } = globalThis.crypto;
    const key = await subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
    const data = new TextEncoder().encode('nodeboot');
    const sig = await subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, key.privateKey, data);
    const digest = Buffer.from(await subtle.digest('SHA-256', data)).toString('hex').slice(0, 8);
    return { verified: await subtle.verify({ name: 'ECDSA', hash: 'SHA-256' }, key.publicKey, sig, data), digest, uuid: crypto.randomUUID().length };
  },
  async noShell() {
    // No "shell": true: exec fails as the docs say, with the app's error
    // unchanged (the console says why, once).
    return await new Promise((resolve) => {
      cp.exec('echo hi | tr a-z A-Z', (err, out) => resolve(err ? err.code : 'ran: ' + out));
    });
  },
};

async function runChecks() {
  const res = {};
  for (const [name, fn] of Object.entries(checks)) {
    try {
      res[name] = { ok: true, value: await fn() };
    } catch (e) {
      res[name] = { ok: false, error: String(e && e.stack || e) };
    }
  }
  return res;
}

http.createServer(async (req, res) => {
  if (req.url === '/checks') {
    const r = await runChecks();
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(r));
    return;
  }
  res.end('compat\n');
}).listen(process.env.PORT, () => console.log(`compat: listening on ${process.env.PORT}`));
