'use strict';
// Run by js/module_test.go against PID 1's real server (internal/appapi)
// over a fake node; $NODEBOOT_TEST_CONTROL asks the server to act.
const test = require('node:test');
const assert = require('node:assert');
const http = require('node:http');
const nodeboot = require('..');

function control(path) {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: process.env.NODEBOOT_TEST_CONTROL, path, method: 'POST' }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { body += c; });
      res.on('end', () => resolve(body));
    });
    req.on('error', reject);
    req.end();
  });
}

test('on a node', () => {
  assert.strictEqual(nodeboot.isNode(), true);
});

test('info', async () => {
  const i = await nodeboot.info();
  assert.strictEqual(i.app.name, 'web');
  assert.strictEqual(i.hostname, 'testnode');
});

test('secret: its own, an unknown one', async () => {
  assert.strictEqual(await nodeboot.secret('db'), 's3cret');
  await assert.rejects(nodeboot.secret('nope'), (e) => e.code === 'not_found' && /nodeboot secret set NODE web nope/.test(e.message));
  await assert.rejects(nodeboot.secret('../x'), (e) => e.code === 'bad_request');
});

test('services', async () => {
  const all = await nodeboot.services();
  assert.deepStrictEqual(all.map((s) => s.name), ['web', 'worker']);
  assert.strictEqual((await nodeboot.service('worker')).name, 'worker');
  await assert.rejects(nodeboot.service('ghost'), (e) => e.code === 'not_found');
});

test('ready', async () => {
  assert.strictEqual(await control('/ready'), 'not ready');
  await nodeboot.ready();
  assert.strictEqual(await control('/ready'), 'ready');
});

test('watchdog keeps itself alive', async () => {
  const w = await nodeboot.watchdog(500);
  assert.match(await control('/status'), /"watchdogMs":500/);
  await w.stop();
  assert.doesNotMatch(await control('/status'), /watchdogMs/);
  await assert.rejects(nodeboot.watchdog(-1), TypeError);
});

test('onShutdown runs before the stop, which waits for it', async () => {
  let finished = false;
  await nodeboot.onShutdown(async (reason) => {
    assert.strictEqual(reason, 'deploy');
    await new Promise((r) => setTimeout(r, 50));
    finished = true;
  }, { timeoutMs: 20000 });
  const took = await control('/beforeStop');
  assert.strictEqual(took, 'done');
  assert.strictEqual(finished, true);
});

test('lock holds a deploy until release', async () => {
  const l = await nodeboot.lock('migrating');
  assert.strictEqual(l.maxSeconds, 3600);
  assert.match(await control('/status'), /"reason":"migrating"/);
  const waited = control('/waitLocks');
  await new Promise((r) => setTimeout(r, 50));
  await l.release();
  assert.strictEqual(await waited, 'proceeds');
  assert.doesNotMatch(await control('/status'), /migrating/);
});

test('events', async () => {
  const it = nodeboot.events()[Symbol.asyncIterator]();
  let got = null;
  it.next().then((r) => { got = r; });
  // Published until the subscription (made in the background) sees one.
  while (!got) {
    await control('/publish');
    await new Promise((r) => setTimeout(r, 20));
  }
  const { value } = got;
  assert.strictEqual(value.type, 'deploy');
  await it.return();
});

test('an events() iteration keeps the process alive until an event comes', async () => {
  const { spawn } = require('node:child_process');
  // Nothing else holds this child's event loop: it ends when the
  // iteration lets go, printing nothing, or prints the event it waited for.
  const child = spawn(process.execPath, ['-e', `
    const it = require(${JSON.stringify(require.resolve('..'))}).events()[Symbol.asyncIterator]();
    it.next().then((r) => { console.log('got ' + r.value.type); return it.return(); });
  `], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (c) => { out += c; });
  const exited = new Promise((r) => child.on('exit', r));
  let done = false;
  exited.then(() => { done = true; });
  while (!done) {
    await control('/publish');
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.strictEqual(await exited, 0);
  assert.strictEqual(out.trim(), 'got deploy');
});

test('onShutdown handlers get the cause', async () => {
  const got = [];
  await nodeboot.onShutdown((reason) => { got.push(reason); });
  await control('/beforeStop?cause=update');
  assert.ok(got.includes('update'), 'causes seen: ' + got.join(', '));
});
