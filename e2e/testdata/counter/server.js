// Counts its own starts in two places: its data dir (NODEBOOT_DATA_DIR) and a
// "persist" dir next to its code. Each count is made durable (fsync of the
// file and its directory) before the console says so: the e2e test cuts the
// power right after that line and expects the count to survive.
const fs = require('node:fs');
const path = require('node:path');
const http = require('node:http');

function bump(dir) {
  const file = path.join(dir, 'count');
  let n = 0;
  try { n = Number(fs.readFileSync(file, 'utf8')) || 0; } catch (err) { if (err.code !== 'ENOENT') throw err; }
  n += 1;
  const tmp = file + '.tmp';
  const fd = fs.openSync(tmp, 'w');
  fs.writeSync(fd, String(n));
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  fs.renameSync(tmp, file);
  const dfd = fs.openSync(dir, 'r');
  fs.fsyncSync(dfd);
  fs.closeSync(dfd);
  return n;
}

const state = bump(process.env.NODEBOOT_DATA_DIR);
const persisted = bump(path.join(__dirname, 'db'));
console.log(`durable state=${state} persist=${persisted}`);

http.createServer((req, res) => {
  res.setHeader('content-type', 'application/json');
  const st = fs.statfsSync(process.env.NODEBOOT_DATA_DIR);
  res.end(JSON.stringify({ state, persisted, dataBytes: st.blocks * st.bsize }));
}).listen(Number(process.env.PORT));
