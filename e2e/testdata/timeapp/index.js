// The clock e2e test's app: it answers the time as the app sees it and the
// node events it received (require('nodeboot').events()), so the test sees
// the clock the node restored and the "clock" event of the first NTP answer,
// and info()'s clock state.
const http = require('node:http');
const nodeboot = require('nodeboot');

const events = [];
let listening = false;
(async () => {
  const it = nodeboot.events();
  listening = true;
  for await (const ev of it) events.push(ev);
})().catch((e) => events.push({ type: 'error', message: String(e) }));

http.createServer(async (req, res) => {
  // info().clock: the state the "clock" event announces, for an app that
  // subscribed too late for it.
  const { clock } = await nodeboot.info();
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ now: new Date().toISOString(), listening, events, clock }));
}).listen(process.env.PORT || 8080);
