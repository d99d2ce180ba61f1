// The e2e test's web app: require('nodeboot') from the image, no install.
const http = require('node:http');
const fs = require('node:fs');
const { spawn } = require('node:child_process');
const nodeboot = require('nodeboot');

let held = null;
const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://x');
  const reply = (code, body) => { res.writeHead(code); res.end(typeof body === 'string' ? body : JSON.stringify(body)); };
  try {
    switch (url.pathname) {
      case '/':
        return reply(200, 'web ' + fs.readFileSync(__dirname + '/version.txt', 'utf8').trim());
      case '/info':
        return reply(200, await nodeboot.info());
      case '/service':
        return reply(200, await nodeboot.service(url.searchParams.get('name')));
      case '/secret':
        // Another app's secret name: this app has none of that name.
        try {
          await nodeboot.secret(url.searchParams.get('name'));
          return reply(200, 'read it');
        } catch (e) {
          return reply(200, e.code + ': ' + e.message);
        }
      case '/other-socket':
        // The worker's socket is not in this app's view at all.
        try {
          fs.statSync('/run/nodeboot/app/worker');
          return reply(200, 'visible');
        } catch (e) {
          return reply(200, e.code);
        }
      case '/lock':
        held = await nodeboot.lock('e2e ' + url.searchParams.get('why'));
        return reply(200, 'locked ' + held.maxSeconds);
      case '/release':
        await held.release();
        return reply(200, 'released');
      case '/slow':
        // An in-flight request the deploy must not cut off.
        await new Promise((r) => setTimeout(r, Number(url.searchParams.get('ms'))));
        return reply(200, 'slow answer complete');
      case '/garbage': {
        // Malformed and oversized requests straight on the socket: each
        // answered with an error, and the node's API goes on serving.
        const net = require('node:net');
        const answers = await new Promise((resolve, reject) => {
          const sock = net.createConnection(process.env.NODEBOOT_SOCKET);
          let buf = '';
          sock.setEncoding('utf8');
          sock.on('data', (c) => { buf += c; });
          sock.on('error', reject);
          sock.on('close', () => resolve(buf.trim().split('\n').map((l) => JSON.parse(l).error.code)));
          sock.write('not json\n{"id":1,"op":"format-disk"}\n{"id":2,"op":"secret","name":"../x"}\n' + 'x'.repeat(20000) + '\n');
        });
        const again = await nodeboot.info();
        return reply(200, answers.join(' ') + ' then info of ' + again.app.name);
      }
      case '/hog': {
        // Node-wide memory pressure, made by a child that fills the RAM
        // until less than 8 % is available (node's freemem is
        // MemAvailable) and holds it until PID 1 says so in an event;
        // the child's exit gives the memory back at once.
        const it = nodeboot.events()[Symbol.asyncIterator]();
        const child = spawn(process.execPath, ['-e', `
          const os = require('node:os');
          const held = [];
          while (os.freemem() > os.totalmem() * 0.08) held.push(Buffer.alloc(16 << 20, 1));
          console.log('holding ' + held.length * 16 + ' MiB');
          setInterval(() => {}, 1000);
        `], { stdio: ['ignore', 'inherit', 'inherit'] });
        const timeout = setTimeout(() => it.return(), 120000);
        try {
          for (;;) {
            const { value, done } = await it.next();
            if (done) return reply(200, 'no memory event');
            if (value.type === 'memory') return reply(200, value);
          }
        } finally {
          clearTimeout(timeout);
          child.kill('SIGKILL');
          it.return();
        }
      }
      case '/hang':
        reply(200, 'hanging');
        setTimeout(() => { for (;;) {} }, 100);
        return;
      default:
        return reply(404, 'no');
    }
  } catch (e) {
    return reply(500, (e.code || '') + ': ' + e.message);
  }
});

server.listen(Number(process.env.PORT), async () => {
  await nodeboot.watchdog(3000);
  await nodeboot.onShutdown((reason) => new Promise((resolve) => {
    console.log('web draining for ' + reason);
    server.close(() => { console.log('web drained'); resolve(); });
  }), { timeoutMs: 30000 });
  console.log('web up ' + (await nodeboot.info()).app.name);
});
