// Types of require('nodeboot') / import 'nodeboot'.

/** An error the node answered with, or ENOTNODEBOOT off a node. */
export declare class NodebootError extends Error {
  /** ENOTNODEBOOT, bad_request, not_found, not_an_app, too_many, too_large, internal, ECLOSED, ... */
  code: string;
}

export interface Info {
  hostname: string;
  imageVersion: string;
  nodeVersion: string;
  kernel: string;
  uptimeSeconds: number;
  bootId: string;
  memory: { totalBytes: number; availableBytes: number };
  addresses: string[];
  /**
   * The wall clock now: the state the "clock" event announces, for an app
   * that started (or subscribed to events()) after it came. Subscribe
   * first, then check this, and nothing falls between.
   */
  clock: {
    /** An NTP server answered this boot. */
    synced: boolean;
    /** The NTP server of the last answer, or where the time was restored from ("saved time", "build time") before any. */
    source: string;
    /** RFC 3339; when the last NTP answer was applied (absent before one). */
    lastSync?: string;
  };
  /** The node's network now: the state the "network" event announces. */
  network: {
    /** The network was configured this boot (a DHCP lease or the static address). */
    up: boolean;
    /** Its interface, once up. */
    interface?: string;
  };
  /** The root slots and the last OS update, on disk images. */
  os?: Record<string, unknown>;
  app: {
    name: string;
    /** "image" or "sha256:<hex>" */
    version: string;
    previousVersion: string;
    dataDir: string;
    port?: number;
    health?: string;
  };
}

export interface Service {
  name: string;
  port?: number;
  /** http://127.0.0.1:<port>; not reachable from an app with "network": "none". */
  url?: string;
  state: string;
  ready: boolean;
}

/**
 * What happened: a deploy or rollback of an app; an OS update staged,
 * committed or failed; the network came up; the clock was set from the
 * network; an app's cgroup or the node ran short of memory; this app's
 * lock() was overridden.
 */
export type EventType = 'deploy' | 'update' | 'network' | 'clock' | 'memory' | 'lock-overridden';

export interface NodeEvent {
  type: EventType;
  /** RFC 3339 */
  time: string;
  /** The app it is about (deploy, memory, lock-overridden); absent for the node. */
  app?: string;
  message: string;
}

/** Why the app is being stopped, as onShutdown handlers get it. */
export type ShutdownCause = 'deploy' | 'update' | 'restart' | 'reboot' | 'power-off';

export interface Lock {
  /** The app's maxLockSeconds: the longest this lock holds anything off. */
  maxSeconds: number;
  release(): Promise<void>;
}

export interface Watchdog {
  stop(): Promise<Watchdog>;
}

export declare const SOCKET_ENV: 'NODEBOOT_SOCKET';
export declare function isNode(): boolean;
export declare function info(): Promise<Info>;
export declare function ready(): Promise<void>;
export declare function watchdog(intervalMs: number): Promise<Watchdog>;
export declare function onShutdown(fn: (cause: ShutdownCause) => unknown, opts?: { timeoutMs?: number }): Promise<void>;
export declare function lock(reason: string): Promise<Lock>;
export declare function services(): Promise<Service[]>;
export declare function service(name: string): Promise<Service>;
export declare function secret(name: string): Promise<string>;
export declare function events(): AsyncIterable<NodeEvent>;

declare const nodeboot: {
  isNode: typeof isNode;
  info: typeof info;
  ready: typeof ready;
  watchdog: typeof watchdog;
  onShutdown: typeof onShutdown;
  lock: typeof lock;
  services: typeof services;
  service: typeof service;
  secret: typeof secret;
  events: typeof events;
  NodebootError: typeof NodebootError;
  SOCKET_ENV: typeof SOCKET_ENV;
};
export default nodeboot;
