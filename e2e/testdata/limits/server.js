// An app for the kernel-limit tests: it answers who it is, allocates 1 GiB
// in one burst on /hog, spins a worker thread on /busy, and shows its own
// cgroup's files (the sandbox mounts the app's cgroup on /sys/fs/cgroup).
const http = require('http');
const fs = require('fs');
const { Worker } = require('worker_threads');

const started = Date.now();
let held = null;
let worker = null;

http.createServer((req, res) => {
  const send = (code, body) => {
    res.writeHead(code, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  switch (req.url) {
    case '/':
      return send(200, { pid: process.pid, started });
    case '/hog':
      // Every page of the 1 GiB written in one native memset, faster than
      // any poll could see it grow. (Buffer.alloc would not do: calloc's
      // fresh pages are zero already and stay untouched.)
      held = Buffer.allocUnsafe(1 << 30).fill(1);
      return send(200, { held: held.length });
    case '/busy':
      if (!worker) worker = new Worker('for (;;) {}', { eval: true });
      return send(200, { busy: true });
    case '/cpu.stat':
    case '/memory.max':
    case '/memory.high':
    case '/cpu.max':
      try {
        return send(200, { text: fs.readFileSync('/sys/fs/cgroup' + req.url, 'utf8') });
      } catch (e) {
        return send(500, { error: e.code || String(e) });
      }
    default:
      return send(404, { error: 'no such path' });
  }
}).listen(process.env.PORT, '0.0.0.0');
