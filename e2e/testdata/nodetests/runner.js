'use strict';
// Runs Node's own tests (the test/parallel files listed in tests.txt, which
// the harness copies next to this file with test/common and test/fixtures)
// one file per process with this very node (process.execPath), as Node's
// tools/test.py does: the file's first "// Flags:" line gives node's
// options, TEST_THREAD_ID names each worker's tmpdir, and a file passes
// when node exits 0. In the guest it serves GET /results (running in the
// background from the start); on the host `node runner.js --out FILE`
// runs once and writes the same JSON.
const fs = require('fs');
const path = require('path');
const http = require('http');
const os = require('os');
const { spawn } = require('child_process');

const here = __dirname;
const tests = fs.readFileSync(path.join(here, 'tests.txt'), 'utf8').split('\n').filter(Boolean);
const jobs = Number(process.env.NODE_TESTS_JOBS) || 2;
const timeoutMs = Number(process.env.NODE_TESTS_TIMEOUT_MS) || 300000;
// Node's tmpdirs go under NODE_TEST_DIR: the guest's code dir is read-only.
const testRoot = process.env.NODE_TEST_DIR || fs.mkdtempSync(path.join(os.tmpdir(), 'node-tests-'));
fs.mkdirSync(testRoot, { recursive: true });

const results = {};
let done = 0;
const started = Date.now();

function flagsOf(file) {
  const m = /\/\/\s+Flags:(.*)/.exec(fs.readFileSync(file, 'utf8'));
  return m ? m[1].trim().split(/\s+/).filter(Boolean) : [];
}

function runOne(name, worker) {
  return new Promise((resolve) => {
    const file = path.join(here, 'test', 'parallel', name);
    const args = [...flagsOf(file), file];
    const t0 = Date.now();
    let out = '';
    const keep = (b) => { out += b; if (out.length > 8192) out = out.slice(-4096); };
    const child = spawn(process.execPath, args, {
      cwd: here,
      env: { ...process.env, NODE_TEST_DIR: testRoot, TEST_THREAD_ID: String(worker) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const skipped = /^1\.\.0 # Skipped/m.test(out);
      results[name] = {
        status: code === 0 ? (skipped ? 'skip' : 'pass') : 'fail',
        code, signal, ms: Date.now() - t0,
        tail: code === 0 ? '' : out.slice(-1500),
      };
      done++;
      resolve();
    });
  });
}

async function runAll() {
  let next = 0;
  await Promise.all(Array.from({ length: jobs }, async (_, worker) => {
    while (next < tests.length) await runOne(tests[next++], worker);
  }));
}

function report() {
  return { node: process.version, total: tests.length, done, seconds: Math.round((Date.now() - started) / 1000), results };
}

const outIdx = process.argv.indexOf('--out');
if (outIdx > 0) {
  runAll().then(() => fs.writeFileSync(process.argv[outIdx + 1], JSON.stringify(report())));
} else {
  runAll();
  http.createServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(report()));
  }).listen(Number(process.env.PORT) || 8080);
}
