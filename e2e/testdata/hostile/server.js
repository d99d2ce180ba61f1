// A hostile app: it tries to break out of its sandbox in every way the
// sandbox test knows and reports, over HTTP as JSON, what happened. Each
// result is "ok" (the attempt worked: a hole) or the error code it met.
const http = require('node:http');
const fs = require('node:fs');
const path = require('node:path');

const sys = require('./sys.node');
const dataDir = process.env.NODEBOOT_DATA_DIR;
const other = process.env.OTHER_APP || 'wellbehaved';

function code(fn) {
  try {
    fn();
    return 'ok';
  } catch (err) {
    return err.code || String(err);
  }
}

function attempts() {
  const r = {};
  r.writeRoot = code(() => fs.writeFileSync('/evil', 'x'));
  r.writeEtc = code(() => fs.writeFileSync('/etc/passwd', 'evil::0:0::/:/bin/sh\n'));
  r.writeCode = code(() => fs.writeFileSync(path.join(__dirname, 'server.js'), '// replaced'));
  r.writeUsr = code(() => fs.writeFileSync('/usr/bin/evil', 'x'));
  r.readKey = code(() => fs.readFileSync('/etc/nodeboot/api/node.key'));
  r.readRuntime = code(() => fs.readFileSync('/etc/nodeboot/runtime.json'));
  r.readOtherState = code(() => fs.readdirSync(`/data/state/${other}`));
  r.writeOtherState = code(() => fs.writeFileSync(`/data/state/${other}/evil`, 'x'));
  r.readOtherCode = code(() => fs.readdirSync(`/apps/${other}`));
  r.readLogs = code(() => fs.readdirSync('/data/logs'));
  r.listData = code(() => { const e = fs.readdirSync('/data/state'); if (e.length !== 1) throw Object.assign(new Error(e.join(',')), { code: 'SEES:' + e.join(',') }); });
  r.writeModprobe = code(() => fs.writeFileSync('/proc/sys/kernel/modprobe', `${dataDir}/evil`));
  r.writeSysrq = code(() => fs.writeFileSync('/proc/sysrq-trigger', 'b'));
  r.readDisk = code(() => fs.readFileSync('/dev/vda', { length: 1 }));
  r.readMem = code(() => fs.readFileSync('/dev/mem'));
  r.writeCgroup = code(() => fs.writeFileSync('/sys/fs/cgroup/memory.max', 'max'));
  // Processes: only its own, not even the sandbox's PID 1.
  const pids = fs.readdirSync('/proc').filter((n) => /^\d+$/.test(n));
  r.visiblePids = pids.length;
  r.visibleCmdlines = pids.map((p) => { try { return fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0').join(' ').trim(); } catch { return '?'; } });
  r.killPid1 = code(() => process.kill(1, 'SIGKILL'));
  let otherVisible = 0;
  const own = new Set(fs.readdirSync('/proc/self/task').map(Number)); // its own threads
  for (let p = 2; p < 400; p++) {
    if (p === process.pid || own.has(p)) continue;
    try { process.kill(p, 0); otherVisible++; } catch {}
  }
  r.killablePids = otherVisible;
  // No JavaScript API: the native addon makes the calls.
  for (const name of ['mount', 'umount', 'finit_module', 'init_module', 'delete_module', 'packet_socket', 'raw_socket',
    'ptrace_pid1', 'ptrace_parent', 'reboot', 'kexec_load', 'swapon', 'unshare_user', 'unshare_mount', 'setns', 'bpf',
    'keyctl', 'chroot', 'sethostname', 'settimeofday', 'open_by_handle_at', 'io_uring_setup', 'setuid0',
    'packet_socket_high', 'raw_socket_high', 'sock_packet', 'vsock', 'alg_socket', 'memfd_create', 'execveat', 'personality']) {
    r['sys_' + name] = sys.call(name);
  }
  // setuid escalation: the bit can be set on its own file, but the state
  // dir is mounted nosuid and no_new_privs holds.
  const f = path.join(dataDir, 'suid');
  fs.writeFileSync(f, '#!/usr/bin/node\n');
  r.chmodSuid = code(() => fs.chmodSync(f, 0o4755));
  const line = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.split(' ')[4] === dataDir) || '';
  r.stateMountOptions = line.split(' ')[5] || '';
  const status = fs.readFileSync('/proc/self/status', 'utf8');
  for (const k of ['CapEff', 'CapPrm', 'CapBnd', 'CapInh', 'CapAmb', 'NoNewPrivs', 'Seccomp']) {
    const m = status.match(new RegExp(`^${k}:\\s*(\\S+)`, 'm'));
    r[k] = m ? m[1] : '';
  }
  r.uid = process.getuid();
  r.groups = process.getgroups();
  r.hostnameBefore = require('node:os').hostname();
  return r;
}

// Fork bomb (in C: node's own spawn would hit the memory limit first):
// pids.max must stop it, and the node and this app keep answering.
function forkBomb() {
  const [started, refused] = sys.forkbomb(100000).split(' ');
  return { started: Number(started), refused };
}

http.createServer(async (req, res) => {
  res.setHeader('content-type', 'application/json');
  if (req.url === '/attempts') {
    res.end(JSON.stringify(attempts()));
  } else if (req.url === '/forkbomb') {
    res.end(JSON.stringify(forkBomb()));
  } else if (req.url === '/oom') {
    // Allocate past the memory limit and touch every page; the OOM
    // killer ends the app, the supervisor restarts it.
    res.end('{"allocating":true}');
    const hold = [];
    setImmediate(function grow() {
      for (let i = 0; i < 4; i++) hold.push(Buffer.alloc(1 << 20, 1));
      setImmediate(grow);
    });
  } else {
    res.end(JSON.stringify({ app: 'hostile', pid: process.pid, started: startedAt }));
  }
}).listen(Number(process.env.PORT), () => console.log('hostile ready'));
const startedAt = Date.now();
