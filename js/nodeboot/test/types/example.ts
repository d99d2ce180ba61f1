// Type-checked against index.d.ts by js/types_test.go (tsc --strict): it
// uses every export, so a call the types do not describe fails the test.
import nodeboot, {
  NodebootError, SOCKET_ENV, isNode, info, ready, watchdog, onShutdown, lock,
  services, service, secret, events,
  type Info, type Service, type NodeEvent, type Lock, type Watchdog, type ShutdownCause, type EventType,
} from 'nodeboot';

async function main(): Promise<void> {
  const env: 'NODEBOOT_SOCKET' = SOCKET_ENV;
  if (!isNode()) return;
  const i: Info = await info();
  const hostname: string = i.hostname;
  const mem: number = i.memory.availableBytes;
  const dataDir: string = i.app.dataDir;
  const port: number | undefined = i.app.port;
  const synced: boolean = i.clock.synced;
  const lastSync: string | undefined = i.clock.lastSync;
  const netUp: boolean = i.network.up;
  const ifname: string | undefined = i.network.interface;
  await ready();
  const w: Watchdog = await watchdog(5000);
  await w.stop();
  await onShutdown(async (cause: ShutdownCause) => {
    if (cause === 'deploy' || cause === 'update' || cause === 'restart' || cause === 'reboot' || cause === 'power-off') return;
  }, { timeoutMs: 30000 });
  const l: Lock = await lock('migrating');
  const max: number = l.maxSeconds;
  await l.release();
  const all: Service[] = await services();
  const one: Service = await service('api');
  const url: string | undefined = one.url;
  const ready2: boolean = all[0].ready;
  const token: string = await secret('api-token');
  for await (const ev of events()) {
    const e: NodeEvent = ev;
    const t: EventType = e.type;
    if (t === 'memory' || t === 'clock' || t === 'update' || t === 'network' || t === 'deploy' || t === 'lock-overridden') {
      console.log(e.time, e.app ?? '-', e.message);
    }
  }
  try {
    await nodeboot.secret('x');
  } catch (err) {
    if (err instanceof NodebootError) console.log(err.code, err.message);
  }
  console.log(env, hostname, mem, dataDir, port, max, url, ready2, token.length);
}
main();
