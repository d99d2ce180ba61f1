// The e2e test's worker: no port, no network; ready() is its health.
const crypto = require('node:crypto');
const nodeboot = require('nodeboot');

(async () => {
  const info = await nodeboot.info();
  await nodeboot.ready();
  console.log('worker ready as ' + info.app.name);
  // Waits for its secret, set from the CLI; prints only its hash.
  for (;;) {
    try {
      const v = await nodeboot.secret('token');
      console.log('worker secret sha256 ' + crypto.createHash('sha256').update(v).digest('hex'));
      break;
    } catch (e) {
      if (e.code !== 'not_found') console.log('worker secret: ' + e.code);
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  // Every node event, on the console (the test looks for the deploy).
  for await (const ev of nodeboot.events()) {
    console.log('worker event ' + ev.type + ' ' + (ev.app || '-') + ': ' + ev.message);
  }
})().catch((e) => { console.log('worker failed: ' + e.message); process.exit(1); });
