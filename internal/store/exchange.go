package store

import "errors"

// errNoExchange: the atomic exchange of two names is not available here;
// the caller falls back to two renames.
var errNoExchange = errors.New("atomic exchange not supported")

// exchangeNames is exchange, replaceable by tests to take the fallback.
var exchangeNames = exchange
