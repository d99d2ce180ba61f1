// A broad workload of node's APIs: docs/sandbox.md's measurement of the
// system calls node makes, and the sandbox test's proof that they all
// still work under the filter. It prints "workload done" or the error.
const http = require('node:http'), https = require('node:https'), http2 = require('node:http2');
const net = require('node:net'), dgram = require('node:dgram'), dns = require('node:dns');
const fs = require('node:fs'), os = require('node:os'), path = require('node:path');
const zlib = require('node:zlib'), crypto = require('node:crypto'), cp = require('node:child_process');
const { Worker } = require('node:worker_threads'), v8 = require('node:v8'), vm = require('node:vm');
const tls = require('node:tls'), readline = require('node:readline'), { performance } = require('node:perf_hooks');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wl-'));
async function main() {
  // fs
  fs.writeFileSync(path.join(dir, 'a'), 'x'.repeat(100000));
  await fs.promises.copyFile(path.join(dir, 'a'), path.join(dir, 'b'));
  fs.copyFileSync(path.join(dir, 'a'), path.join(dir, 'c'), fs.constants.COPYFILE_FICLONE);
  fs.symlinkSync(path.join(dir, 'a'), path.join(dir, 'l')); fs.readlinkSync(path.join(dir, 'l')); fs.realpathSync(path.join(dir, 'l'));
  fs.linkSync(path.join(dir, 'a'), path.join(dir, 'h')); fs.chmodSync(path.join(dir, 'a'), 0o600); fs.utimesSync(path.join(dir, 'a'), 1, 2);
  fs.truncateSync(path.join(dir, 'b'), 10); fs.statfsSync(dir); fs.accessSync(dir); fs.lstatSync(path.join(dir, 'l'));
  const fd = fs.openSync(path.join(dir, 'a'), 'r+'); fs.fsyncSync(fd); fs.fdatasyncSync(fd); fs.readSync(fd, Buffer.alloc(10), 0, 10, 5); fs.writevSync(fd, [Buffer.from('a'), Buffer.from('b')], 3); fs.fchmodSync(fd, 0o644); fs.futimesSync(fd, 1, 2); fs.ftruncateSync(fd, 100); fs.closeSync(fd);
  const fh = await fs.promises.open(path.join(dir, 'a')); await fh.readv([Buffer.alloc(4), Buffer.alloc(4)], 0); await fh.close();
  for await (const e of await fs.promises.opendir(dir)) void e;
  fs.cpSync(dir, dir + '-copy', { recursive: true }); fs.rmSync(dir + '-copy', { recursive: true });
  fs.mkdtempSync(path.join(dir, 'x')); fs.readdirSync(dir, { withFileTypes: true }); fs.renameSync(path.join(dir, 'b'), path.join(dir, 'b2'));
  fs.createReadStream(path.join(dir, 'a')).pipe(fs.createWriteStream(path.join(dir, 'd')));
  await new Promise((r) => { const w = fs.watch(dir, () => { w.close(); r(); }); fs.writeFileSync(path.join(dir, 'e'), 'e'); });
  await new Promise((r) => { fs.watchFile(path.join(dir, 'e'), { interval: 10 }, () => { fs.unwatchFile(path.join(dir, 'e')); r(); }); setTimeout(() => fs.writeFileSync(path.join(dir, 'e'), 'ee'), 50); });
  try { fs.chownSync(path.join(dir, 'a'), process.getuid(), process.getgid()); } catch {}
  // os, process
  os.cpus(); os.networkInterfaces(); os.userInfo(); os.loadavg(); os.uptime(); os.freemem(); os.totalmem(); os.hostname(); os.release(); os.getPriority(); try { os.setPriority(os.getPriority()); } catch {}
  process.memoryUsage(); process.resourceUsage(); process.cpuUsage(); process.hrtime.bigint(); process.uptime(); process.umask(); process.getgroups(); process.constrainedMemory?.(); process.availableMemory?.(); process.report?.getReport();
  v8.getHeapStatistics(); v8.writeHeapSnapshot(path.join(dir, 'heap.heapsnapshot')); performance.now(); performance.eventLoopUtilization();
  // crypto
  crypto.randomBytes(32); crypto.scryptSync('p', 's', 32); crypto.generateKeyPairSync('rsa', { modulusLength: 1024 }); crypto.createHash('sha256').update('x').digest();
  await new Promise((r) => crypto.pbkdf2('p', 's', 1000, 32, 'sha256', r)); crypto.webcrypto.getRandomValues(new Uint8Array(8));
  // zlib
  zlib.brotliDecompressSync(zlib.brotliCompressSync(Buffer.alloc(100000))); await new Promise((r) => zlib.gzip(Buffer.alloc(100000), r));
  // wasm, vm
  const w = new WebAssembly.Module(new Uint8Array([0,97,115,109,1,0,0,0,1,7,1,96,2,127,127,1,127,3,2,1,0,7,7,1,3,97,100,100,0,0,10,9,1,7,0,32,0,32,1,106,11]));
  new WebAssembly.Instance(w).exports.add(1, 2); new WebAssembly.Memory({ initial: 10, maximum: 100, shared: true });
  vm.runInNewContext('1+1'); new SharedArrayBuffer(1 << 20); Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
  // net: tcp, unix, udp, http, https, http2, dns
  const srv = http.createServer((q, s) => s.end('ok')).listen(0, '127.0.0.1'); await new Promise((r) => srv.on('listening', r));
  await new Promise((r) => http.get({ port: srv.address().port, host: '127.0.0.1' }, (s) => { s.resume(); s.on('end', r); }));
  await fetch(`http://127.0.0.1:${srv.address().port}/`).then((r) => r.text()); srv.close();
  const us = net.createServer((c) => c.end('u')).listen(path.join(dir, 'sock')); await new Promise((r) => us.on('listening', r));
  await new Promise((r) => net.connect(path.join(dir, 'sock')).on('data', () => {}).on('end', r)); us.close();
  const v6 = net.createServer((c) => c.end()).listen(0, '::1'); await new Promise((r) => v6.on('listening', r).on('error', r)); v6.close();
  const u = dgram.createSocket('udp4'); await new Promise((r) => u.bind(0, '127.0.0.1', r)); u.setBroadcast(true); u.setTTL(10); try { u.addMembership('239.1.1.1'); } catch {} await new Promise((r) => u.send('x', u.address().port, '127.0.0.1', r)); u.close();
  const u6 = dgram.createSocket('udp6'); await new Promise((r) => u6.bind(0, '::1', r).on('error', r)); u6.close();
  await dns.promises.lookup('localhost'); // /etc/hosts: no query leaves the machine
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const h2 = http2.createServer().on('stream', (s) => { s.respond(); s.end('h2'); }).listen(0); await new Promise((r) => h2.on('listening', r));
  const c2 = http2.connect(`http://localhost:${h2.address().port}`); await new Promise((r) => { const q = c2.request(); q.resume(); q.on('end', r); q.end(); }); c2.close(); h2.close();
  const sock = net.connect({ port: 9, host: '127.0.0.1' }).on('error', () => {}); sock.setKeepAlive(true); sock.setNoDelay(true);
  // child processes
  cp.execFileSync(process.execPath, ['-e', '1']); await new Promise((r) => cp.fork(__filename, ['child'], { execArgv: [] }).on('exit', r).on('error', r));
  cp.spawnSync(process.execPath, ['-p', 'process.pid'], { stdio: 'pipe' });
  const ch = cp.spawn(process.execPath, ['-e', 'process.stdin.pipe(process.stdout)'], { detached: true }); ch.stdin.end('x'); await new Promise((r) => ch.on('exit', r));
  try { cp.execSync('true'); } catch {}
  // workers
  await new Promise((r) => new Worker('require("node:worker_threads").parentPort.postMessage(1)', { eval: true }).on('message', r));
  // signals, timers
  process.on('SIGUSR2', () => {}); process.kill(process.pid, 'SIGUSR2'); await new Promise((r) => setTimeout(r, 20)); setImmediate(() => {}); queueMicrotask(() => {});
  fs.rmSync(dir, { recursive: true, force: true });
  console.log('workload done');
}
if (process.argv[2] === 'child') process.exit(0);
main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
