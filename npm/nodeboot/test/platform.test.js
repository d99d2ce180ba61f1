'use strict';
const test = require('node:test');
const assert = require('node:assert');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { PLATFORMS, binaryPath } = require('../lib/platform.js');

// resolve as require.resolve would, for a set of installed packages.
const installed = (...pkgs) => (id) => {
  const pkg = pkgs.find((p) => id.startsWith(p + '/'));
  if (!pkg) {
    const e = new Error("Cannot find module '" + id + "'");
    e.code = 'MODULE_NOT_FOUND';
    throw e;
  }
  return '/nm/' + id;
};

test('each supported platform picks its own package', () => {
  const all = installed(...Object.values(PLATFORMS));
  for (const [key, pkg] of [
    ['linux-x64', '@nodeboot/linux-x64'],
    ['linux-arm64', '@nodeboot/linux-arm64'],
    ['darwin-arm64', '@nodeboot/darwin-arm64'],
    ['darwin-x64', '@nodeboot/darwin-x64'],
  ]) {
    const [platform, arch] = key.split('-');
    assert.strictEqual(binaryPath(platform, arch, all, {}), '/nm/' + pkg + '/bin/nodeboot');
  }
});

test('an unsupported platform names the ones that exist', () => {
  for (const [platform, arch] of [['win32', 'x64'], ['linux', 'ia32'], ['freebsd', 'x64'], ['linux', 'riscv64']]) {
    assert.throws(() => binaryPath(platform, arch, installed(), {}), (e) => {
      assert.match(e.message, new RegExp('no binary for ' + platform + '-' + arch));
      for (const k of Object.keys(PLATFORMS)) assert.match(e.message, new RegExp(k));
      return true;
    });
  }
});

test('a missing platform package says how to install it', () => {
  assert.throws(() => binaryPath('linux', 'x64', installed('@nodeboot/darwin-arm64'), {}), /@nodeboot\/linux-x64.*not installed.*npm install/);
});

test('NODEBOOT_BINARY overrides the platform packages', () => {
  assert.strictEqual(binaryPath('sunos', 'x64', installed(), { NODEBOOT_BINARY: '/opt/nodeboot' }), '/opt/nodeboot');
});

// The launcher itself: arguments and exit status pass through, failures
// are told on stderr.
test('the launcher runs the binary with its arguments and exit status', { skip: process.platform === 'win32' }, () => {
  const launcher = path.join(__dirname, '..', 'bin', 'nodeboot.js');
  const fake = path.join(require('node:os').tmpdir(), 'nodeboot-fake-' + process.pid);
  require('node:fs').writeFileSync(fake, '#!/bin/sh\necho "args: $*"\nexit 3\n', { mode: 0o755 });
  try {
    const r = spawnSync(process.execPath, [launcher, 'build', '.', '-o', 'out dir'], { env: { ...process.env, NODEBOOT_BINARY: fake }, encoding: 'utf8' });
    assert.strictEqual(r.stdout, 'args: build . -o out dir\n');
    assert.strictEqual(r.status, 3);
    const missing = spawnSync(process.execPath, [launcher], { env: { ...process.env, NODEBOOT_BINARY: fake + '-missing' }, encoding: 'utf8' });
    assert.strictEqual(missing.status, 1);
    assert.match(missing.stderr, /cannot start .*-missing/);
  } finally {
    require('node:fs').unlinkSync(fake);
  }
});

test('package.json lists every platform package as optional', () => {
  const pj = require('../package.json');
  assert.deepStrictEqual(Object.keys(pj.optionalDependencies).sort(), Object.values(PLATFORMS).sort());
  assert.strictEqual(pj.bin.nodeboot, 'bin/nodeboot.js');
});
