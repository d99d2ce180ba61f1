import nodeboot from './index.js';

export const {
  isNode, info, ready, watchdog, onShutdown, lock, services, service, secret, events,
  NodebootError, SOCKET_ENV,
} = nodeboot;
export default nodeboot;
