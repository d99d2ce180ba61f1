// A well-behaved app: everything Node apps normally do must keep working
// inside the sandbox. /checks runs each and reports it; the test asserts
// every one is ok.
const http = require('node:http');
const dns = require('node:dns');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const zlib = require('node:zlib');
const crypto = require('node:crypto');
const { execFile } = require('node:child_process');
const { Worker } = require('node:worker_threads');
const { setTimeout: sleep } = require('node:timers/promises');

const dataDir = process.env.NODEBOOT_DATA_DIR;

function settle(fn) {
  return Promise.resolve().then(fn).then(
    (value) => ({ ok: true, value }),
    (err) => ({ ok: false, error: String((err && err.stack) || err) }));
}

const checks = {
  httpClient: () => new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: Number(process.env.PORT), path: '/' }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve(body.trim()));
    }).on('error', reject);
  }),
  fsState: async () => {
    const dir = path.join(dataDir, 'sub');
    await fs.promises.mkdir(dir, { recursive: true });
    const p = path.join(dir, 'f.txt');
    await fs.promises.writeFile(p + '.tmp', 'state');
    await fs.promises.rename(p + '.tmp', p);
    const st = await fs.promises.stat(p);
    const back = await fs.promises.readFile(p, 'utf8');
    await fs.promises.rm(dir, { recursive: true });
    return `${back} ${st.size}`;
  },
  fsTmp: () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'wb-'));
    fs.writeFileSync(path.join(d, 'x'), 'tmp');
    const back = fs.readFileSync(path.join(d, 'x'), 'utf8');
    fs.rmSync(d, { recursive: true });
    return back;
  },
  fsWatch: () => new Promise((resolve, reject) => {
    const w = fs.watch(dataDir, () => { w.close(); resolve('event'); });
    w.on('error', reject);
    fs.writeFileSync(path.join(dataDir, 'watched'), 'x');
  }),
  readOwnCode: () => fs.readFileSync(__filename, 'utf8').length > 0,
  workerThreads: () => new Promise((resolve, reject) => {
    const w = new Worker('const { parentPort } = require("node:worker_threads"); let s = 0; for (let i = 0; i < 1e6; i++) s += i; parentPort.postMessage(s);', { eval: true });
    w.once('message', resolve);
    w.once('error', reject);
  }),
  childProcess: () => new Promise((resolve, reject) =>
    execFile(process.execPath, ['-e', 'console.log(6 * 7)'], (err, stdout) => (err ? reject(err) : resolve(stdout.trim())))),
  zlib: () => zlib.gunzipSync(zlib.gzipSync(Buffer.alloc(100000, 'a'))).length,
  crypto: () => {
    const { publicKey, privateKey } = crypto.generateKeyPairSync('ed25519');
    const sig = crypto.sign(null, Buffer.from('m'), privateKey);
    return crypto.verify(null, Buffer.from('m'), publicKey, sig) && crypto.createHash('sha256').update(crypto.randomBytes(32)).digest('hex').length;
  },
  timers: async () => { const t = Date.now(); await sleep(50); return Date.now() - t >= 45; },
  dnsLocalhost: () => dns.promises.lookup('localhost').then((r) => r.address),
  networkInterfaces: () => Object.keys(os.networkInterfaces()),
  userInfo: () => os.userInfo().username,
  constrainedMemory: () => (process.constrainedMemory ? process.constrainedMemory() : null),
  // What libuv reads for constrainedMemory: the app's cgroup as it sees it
  // (an error code in place of a file it cannot read).
  cgroupView: () => {
    const read = (p) => { try { return fs.readFileSync(p, 'utf8').trim(); } catch (e) { return e.code; } };
    return { self: read('/proc/self/cgroup'), max: read('/sys/fs/cgroup/memory.max'), high: read('/sys/fs/cgroup/memory.high') };
  },
  sharedMemory: () => { const sab = new SharedArrayBuffer(1 << 20); new Int32Array(sab)[0] = 1; return sab.byteLength; },
};

http.createServer(async (req, res) => {
  if (req.url !== '/checks') {
    res.end('wellbehaved\n');
    return;
  }
  const out = {};
  for (const [name, fn] of Object.entries(checks)) out[name] = await settle(fn);
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify(out));
}).listen(Number(process.env.PORT), () => console.log('wellbehaved ready'));
