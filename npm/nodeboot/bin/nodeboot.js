#!/usr/bin/env node
'use strict';
// Starts the nodeboot binary of this platform with the same arguments and
// hands back its exit status.
const { spawn } = require('child_process');
const { binaryPath } = require('../lib/platform.js');

let bin;
try {
  bin = binaryPath(process.platform, process.arch, require.resolve, process.env);
} catch (e) {
  console.error('nodeboot: ' + e.message);
  process.exit(1);
}

const child = spawn(bin, process.argv.slice(2), { stdio: 'inherit' });
// Ctrl-C reaches the binary from the terminal itself (same process group):
// it powers the guest off and exits on its own, so this process must not die
// first. A signal sent to this process alone is passed on.
const forward = (sig) => () => {
  if (child.exitCode === null && child.signalCode === null) child.kill(sig);
};
const handlers = {};
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  handlers[sig] = sig === 'SIGINT' ? () => {} : forward(sig);
  process.on(sig, handlers[sig]);
}
child.on('error', (e) => {
  console.error('nodeboot: cannot start ' + bin + ': ' + e.message);
  process.exit(1);
});
child.on('exit', (code, signal) => {
  if (signal) {
    for (const sig of Object.keys(handlers)) process.removeListener(sig, handlers[sig]);
    process.kill(process.pid, signal);
    return;
  }
  process.exit(code === null ? 1 : code);
});
