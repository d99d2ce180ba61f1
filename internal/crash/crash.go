// Package crash keeps a panic in any of PID 1's goroutines from panicking
// the kernel. A Go program dies when any goroutine panics unrecovered, and
// when that program is PID 1 the kernel panics with it ("Attempted to kill
// init!"): the node hangs or reboots without stopping its apps or syncing
// /data. Every goroutine PID 1 starts is therefore started through Go (or
// defers Recover), which hands the panic to the handler PID 1 installs:
// log the stack, stop the apps, sync, reboot (Sequence).
//
// Without an installed handler (tests, the CLI) a recovered panic is
// raised again, so behaviour there is what it would be without this
// package.
package crash

import (
	"runtime/debug"
	"sync"
	"sync/atomic"
)

// Handler receives a recovered panic: the goroutine's name, the value
// passed to panic and the panicking goroutine's stack. It should not
// return (PID 1's reboots); if it does, the goroutine ends.
type Handler func(name string, value any, stack []byte)

var (
	mu      sync.Mutex
	handler Handler
	// handling is set by the first panic: later ones (another goroutine
	// tripping over the same broken state) park instead of starting a
	// second shutdown.
	handling atomic.Bool
)

// SetHandler installs h for the whole process; nil restores re-panicking.
func SetHandler(h Handler) {
	mu.Lock()
	defer mu.Unlock()
	handler = h
	handling.Store(false)
}

func current() Handler {
	mu.Lock()
	defer mu.Unlock()
	return handler
}

// Go runs f in a new goroutine that hands a panic to the handler.
func Go(name string, f func()) {
	go func() {
		defer Recover(name)
		f()
	}()
}

// Recover, deferred directly (`defer crash.Recover("name")`), hands a panic
// of the calling goroutine to the handler. recover() works only when called
// by the deferred function itself, hence no wrapper around this.
func Recover(name string) {
	v := recover()
	if v == nil {
		return
	}
	h := current()
	if h == nil {
		// The runtime prints the original frames too: they are still
		// on the stack below this deferred call.
		panic(v)
	}
	if !handling.CompareAndSwap(false, true) {
		// The first panic's handler is stopping the node already.
		select {}
	}
	h(name, v, debug.Stack())
}
