// Reports, over HTTP, whether the things every Node app takes for granted
// work inside a nodeboot image. The e2e test asserts on each one.
const http = require('node:http');
const dns = require('node:dns');
const os = require('node:os');
const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');
const { execFile } = require('node:child_process');

function settle(fn) {
  return new Promise((resolve) => {
    try {
      Promise.resolve(fn()).then(
        (value) => resolve({ ok: true, value }),
        (err) => resolve({ ok: false, error: String(err && err.stack || err) }));
    } catch (err) {
      resolve({ ok: false, error: String(err && err.stack || err) });
    }
  });
}

const checks = {
  args: () => process.argv.slice(2),
  dnsLocalhost: () => dns.promises.lookup('localhost').then((r) => r.address),
  userInfo: () => { const u = os.userInfo(); return { username: u.username, uid: u.uid, gid: u.gid, homedir: u.homedir }; },
  uid: () => process.getuid(),
  randomBytes: () => crypto.randomBytes(16).toString('hex'),
  writeTmp: () => {
    const p = path.join(os.tmpdir(), `probe-${process.pid}`);
    fs.writeFileSync(p, 'x');
    const back = fs.readFileSync(p, 'utf8');
    fs.unlinkSync(p);
    return back;
  },
  writeDataDir: () => {
    const p = path.join(process.env.NODEBOOT_DATA_DIR, 'probe.txt');
    fs.writeFileSync(p, 'state');
    return fs.readFileSync(p, 'utf8');
  },
  execNode: () => new Promise((resolve, reject) =>
    execFile(process.execPath, ['-v'], (err, stdout) => err ? reject(err) : resolve(stdout.trim()))),
  addon: () => require('nbaddon').hello(),
  env: () => ({ PORT: process.env.PORT, NODE_ENV: process.env.NODE_ENV, HOME: process.env.HOME, NODEBOOT_DATA_DIR: process.env.NODEBOOT_DATA_DIR, GREETING: process.env.GREETING }),
  hostname: () => os.hostname(),
  cwd: () => process.cwd(),
};

http.createServer(async (req, res) => {
  if (req.url !== '/checks') {
    res.end('probe\n');
    return;
  }
  const out = {};
  for (const [name, fn] of Object.entries(checks)) out[name] = await settle(fn);
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify(out));
}).listen(Number(process.env.PORT), () => console.log('probe ready'));
