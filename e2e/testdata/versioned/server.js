// Answers with its version (version.txt next to it) and logs every request,
// so the management e2e test can tell which deployed version serves and
// see a log line printed after it started following the logs. With
// CRASH=1 in version.txt's second line it exits at once, as a broken
// release would.
//
// notes/ is a persist dir: /note/write/<text> stores a note there and
// /note answers it, with the mounts stacked on notes/ and their options, so the test can tell that the note survived deploys and
// that the persist mounts neither stack up nor allow exec.
const fs = require('node:fs');
const path = require('node:path');
const http = require('node:http');

const [version, mode] = fs.readFileSync(path.join(__dirname, 'version.txt'), 'utf8').trim().split('\n');
if (mode === 'crash') {
  console.error(`version ${version}: cannot start: missing DATABASE_URL`);
  process.exit(3);
}
const notes = path.join(__dirname, 'notes');
const noteFile = path.join(notes, 'note.txt');

// The mounts stacked on notes/, bottom first, as their options. The
// sandbox covers /data with a tmpfs and mounts the code dir back, so the
// node's own copies stay listed under the cover with the same path; only a
// mount whose parent is the mount below it at the same path is stacked.
function notesMounts() {
  const unescape = (s) => s.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)));
  const at = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')
    .map((l) => l.split(' '))
    .filter((f) => f.length > 5 && unescape(f[4]) === notes)
    .map((f) => ({ id: f[0], parent: f[1], options: f[5] }));
  const byId = new Map(at.map((m) => [m.id, m]));
  let longest = [];
  for (const m of at) {
    const stack = [];
    for (let c = m; c; c = byId.get(c.parent)) stack.unshift(c.options);
    if (stack.length > longest.length) longest = stack;
  }
  return longest;
}

function note(req, res) {
  if (req.url.startsWith('/note/write/')) {
    const text = decodeURIComponent(req.url.slice('/note/write/'.length));
    const fd = fs.openSync(noteFile, 'w');
    fs.writeSync(fd, text);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
  }
  let text = null;
  try { text = fs.readFileSync(noteFile, 'utf8'); } catch (err) { if (err.code !== 'ENOENT') throw err; }
  const mounts = notesMounts();
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ version, note: text, mounts: mounts.length, options: mounts }));
}

console.log(`version ${version} starting`);
http.createServer((req, res) => {
  console.log(`version ${version} served ${req.url}`);
  if (req.url.startsWith('/note')) return note(req, res);
  res.end(`${version}\n`);
}).listen(Number(process.env.PORT), () => console.log(`version ${version} listening`));
