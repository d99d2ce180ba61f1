'use strict';
// Off a node: require works, isNode() is false, calls say why they fail.
const test = require('node:test');
const assert = require('node:assert');

test('off a node', async () => {
  const saved = process.env.NODEBOOT_SOCKET;
  delete process.env.NODEBOOT_SOCKET;
  try {
    const nodeboot = require('..');
    assert.strictEqual(nodeboot.isNode(), false);
    for (const call of [() => nodeboot.info(), () => nodeboot.ready(), () => nodeboot.secret('x'), () => nodeboot.lock('x')]) {
      await assert.rejects(call(), (e) => e.code === 'ENOTNODEBOOT' && /not running on a nodeboot node/.test(e.message));
    }
  } finally {
    if (saved !== undefined) process.env.NODEBOOT_SOCKET = saved;
  }
});

test('ESM import', async () => {
  const m = await import('../index.mjs');
  assert.strictEqual(typeof m.ready, 'function');
  assert.strictEqual(typeof m.default.secret, 'function');
});
