'use strict';
// An app with "shell": true (e2e/compat_test.go): exec, execSync and
// spawn with shell: true behave as on Debian.
const http = require('http');
const cp = require('child_process');
const util = require('util');

async function checks() {
  const res = {};
  const exec = util.promisify(cp.exec);
  const run = async (name, fn) => {
    try { res[name] = { ok: true, value: await fn() }; } catch (e) { res[name] = { ok: false, error: String(e && e.stack || e) }; }
  };
  await run('exec', async () => (await exec('echo hi | tr a-z A-Z')).stdout);
  await run('execSync', async () => cp.execSync('env | grep -c ^PORT=; id -u').toString());
  await run('spawnShell', async () => await new Promise((resolve, reject) => {
    let out = '';
    const c = cp.spawn('ls /usr/bin | head -n 3 | wc -l', { shell: true });
    c.stdout.on('data', (d) => { out += d; });
    c.on('error', reject);
    c.on('close', (code) => resolve(`${out.trim()} exit ${code}`));
  }));
  // What it runs stays sandboxed: a write outside its dirs still fails.
  await run('sandboxed', async () => (await exec('touch /usr/bin/x 2>/dev/null; echo $?')).stdout);
  return res;
}

http.createServer(async (req, res) => {
  if (req.url === '/checks') {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(await checks()));
    return;
  }
  res.end('shellapp\n');
}).listen(process.env.PORT, () => console.log(`shellapp: listening on ${process.env.PORT}`));
