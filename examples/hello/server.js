// The smallest nodeboot app: answers every request on $PORT.
const http = require('node:http');
const os = require('node:os');

const port = Number(process.env.PORT || 8080);
const server = http.createServer((req, res) => {
  res.setHeader('content-type', 'text/plain; charset=utf-8');
  res.end(`hello from ${os.hostname()} (node ${process.version}, up ${process.uptime().toFixed(1)}s)\n`);
});
server.listen(port, '0.0.0.0', () => {
  console.log(`listening on :${port}`);
});
// PID 1 sends SIGTERM at power-off; close and exit so shutdown is quick.
process.on('SIGTERM', () => server.close(() => process.exit(0)));
