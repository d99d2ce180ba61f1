// The power-cut test's app. Each version ships version.json (its name and
// the sha256 of payload.bin, a file the test writes); at start the app
// checks that the two agree, so a version mixed from two deploys, or cut
// short, says complete=false. It keeps two things in its persist dir (db/):
// a seed written once at its first start, with its hash, and a count of its
// starts, each made durable (fsync of file and directory) before the
// console says so. A lost or reset persist dir shows as seedOK=false or a
// count that went back.
const fs = require('node:fs');
const path = require('node:path');
const http = require('node:http');
const crypto = require('node:crypto');

const sha256 = (b) => crypto.createHash('sha256').update(b).digest('hex');
const db = path.join(__dirname, 'db');

function durable(file, data) {
  const tmp = file + '.tmp';
  const fd = fs.openSync(tmp, 'w');
  fs.writeSync(fd, data);
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  fs.renameSync(tmp, file);
  const dfd = fs.openSync(path.dirname(file), 'r');
  fs.fsyncSync(dfd);
  fs.closeSync(dfd);
}

const meta = JSON.parse(fs.readFileSync(path.join(__dirname, 'version.json'), 'utf8'));
let complete = false;
try {
  complete = sha256(fs.readFileSync(path.join(__dirname, 'payload.bin'))) === meta.payload;
} catch (err) {
  console.error(`keeper: payload.bin: ${err.message}`);
}

const seedFile = path.join(db, 'seed');
if (!fs.existsSync(path.join(db, 'seed.sha256'))) {
  const seed = crypto.randomBytes(64 << 10);
  durable(seedFile, seed);
  durable(path.join(db, 'seed.sha256'), sha256(seed));
}
let seedOK = false;
try {
  seedOK = sha256(fs.readFileSync(seedFile)) === fs.readFileSync(path.join(db, 'seed.sha256'), 'utf8');
} catch (err) {
  console.error(`keeper: seed: ${err.message}`);
}

let starts = 0;
try { starts = Number(fs.readFileSync(path.join(db, 'starts'), 'utf8')) || 0; } catch (err) { if (err.code !== 'ENOENT') throw err; }
starts += 1;
durable(path.join(db, 'starts'), String(starts));
console.log(`keeper: version ${meta.version} complete=${complete} seedOK=${seedOK} durable starts=${starts}`);

http.createServer((req, res) => {
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ version: meta.version, complete, seedOK, starts }));
}).listen(Number(process.env.PORT));
