package supervise

// Control of a running service from outside the supervisor loop: the
// management API restarts apps, switches them to a deployed version and
// follows their output.

// Restart stops the running process (TERM, then KILL after the stop grace)
// and starts it again at once, without backoff; a service waiting out a
// backoff starts at once. It does not wait for the new process.
func (s *Service) Restart() {
	select {
	case s.restartCh <- struct{}{}:
	default: // a restart is already pending
	}
}

// Command is what a service runs: argv after the node binary and the
// working directory. Deploys change it between starts.
type Command struct {
	Args []string
	Dir  string
}

// Command returns what the service runs now (or will at its next start).
func (s *Service) Command() Command {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Command{Args: append([]string(nil), s.opts.Args...), Dir: s.opts.Dir}
}

// SetCommand changes what the next start runs; the running process is not
// touched (call Restart).
func (s *Service) SetCommand(c Command) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts.Args = append([]string(nil), c.Args...)
	s.opts.Dir = c.Dir
}

// Subscribe returns a channel receiving every output line added from now
// on, as Lines shows them, and a function that ends the subscription. A
// subscriber that does not keep up loses lines (it holds at most
// FollowBytes, or 256 lines, unread); the next line it gets says how many.
func (s *Service) Subscribe() (<-chan string, func()) {
	f := &follower{c: make(chan string, followLines)}
	s.ring.mu.Lock()
	if s.ring.subs == nil {
		s.ring.subs = make(map[*follower]struct{})
	}
	s.ring.subs[f] = struct{}{}
	s.ring.mu.Unlock()
	return f.c, func() {
		s.ring.mu.Lock()
		delete(s.ring.subs, f)
		s.ring.mu.Unlock()
	}
}
