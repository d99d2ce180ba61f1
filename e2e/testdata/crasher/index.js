// Throws on start: the supervisor must restart it with growing delays while
// the rest of the node keeps running.
console.log('crasher starting');
throw new Error('crasher: deliberate failure on start');
