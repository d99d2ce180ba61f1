'use strict';
// nodeboot: loaded through NODE_OPTIONS=--require into apps without
// "shell": true. On a nodeboot node such an app has no /bin/sh, so exec(),
// execSync() and spawn(..., { shell: true }) fail with "spawn /bin/sh
// ENOENT", which does not say why. This says it once per process on
// stderr (the app's log and the node's console), and how to opt in. It
// changes nothing else: every call goes through as before, with the same
// result, error and exception.
const cp = require('child_process');

const SHELL = '/bin/sh';
const ENOENT = -require('os').constants.errno.ENOENT; // libuv's UV_ENOENT
let told = false;

function tell() {
  if (told) return;
  told = true;
  process.stderr.write(
    'nodeboot: this app ran a shell command (child_process exec, execSync or spawn with shell: true), ' +
    'but this node has no shell: /bin/sh and the usual programs do not exist here. ' +
    'To give this app a POSIX shell and the common utilities (busybox), add "shell": true to it in nodeboot.json ' +
    'and rebuild; or run programs without a shell (execFile, spawn without shell: true). See docs/sandbox.md.\n');
}

function shellMissing(err) {
  return err != null && err.code === 'ENOENT' &&
    (err.path === SHELL || (typeof err.syscall === 'string' && err.syscall.endsWith(' ' + SHELL)));
}

// Asynchronous spawns (exec, execFile, spawn, fork) all go through
// ChildProcess.prototype.spawn, which returns libuv's error code and emits
// 'error' on the next tick.
const spawn = cp.ChildProcess.prototype.spawn;
cp.ChildProcess.prototype.spawn = function (options) {
  const err = spawn.apply(this, arguments);
  if (err === ENOENT && options != null && options.file === SHELL) tell();
  return err;
};

// The synchronous ones call node's internals directly, so each exported
// function is wrapped: the result or exception is passed on untouched.
for (const name of ['execSync', 'execFileSync', 'spawnSync']) {
  const orig = cp[name];
  if (typeof orig !== 'function') continue;
  const wrapped = {
    [name](...args) {
      let ret;
      try {
        ret = orig.apply(this, args);
      } catch (e) {
        if (shellMissing(e)) tell();
        throw e;
      }
      if (ret != null && shellMissing(ret.error)) tell();
      return ret;
    },
  }[name];
  Object.defineProperty(wrapped, 'length', { value: orig.length });
  cp[name] = wrapped;
}

// ES modules that import these names get the wrapped functions too.
require('module').syncBuiltinESMExports();
