// Answers with its version (version.txt next to it) and logs every request,
// so the management e2e test can tell which deployed version serves and
// see a log line printed after it started following the logs. With
// CRASH=1 in version.txt's second line it exits at once, as a broken
// release would.
const fs = require('node:fs');
const path = require('node:path');
const http = require('node:http');

const [version, mode] = fs.readFileSync(path.join(__dirname, 'version.txt'), 'utf8').trim().split('\n');
if (mode === 'crash') {
  console.error(`version ${version}: cannot start: missing DATABASE_URL`);
  process.exit(3);
}
console.log(`version ${version} starting`);
http.createServer((req, res) => {
  console.log(`version ${version} served ${req.url}`);
  res.end(`${version}\n`);
}).listen(Number(process.env.PORT), () => console.log(`version ${version} listening`));
