package supervise

import (
	"bufio"
	"bytes"
	"io"
)

// writeConsole writes line plus a newline with a single Write, under the
// service's own lock: its stdout and stderr pumps share one writer (the
// console and its log file), and a line must never be interleaved with
// another. The lock is per service, not global: a slow write (the log
// file on a slow disk) holds up only this app's output, never another
// app's or PID 1's (issue 12 item 13). Errors are dropped: a console that
// went away must not stop the app.
func (s *Service) writeConsole(line string) {
	w := s.opts.Console
	if w == nil {
		return
	}
	buf := make([]byte, 0, len(line)+1)
	buf = append(buf, line...)
	buf = append(buf, '\n')
	s.consoleMu.Lock()
	defer s.consoleMu.Unlock()
	_, _ = w.Write(buf)
}

// pump reads r to EOF (or until it is closed), splitting it into lines that
// go, prefixed, to the console and the ring buffer. Lines longer than maxLine
// are cut into pieces of maxLine bytes; a final line without newline is
// still emitted.
func (s *Service) pump(r io.Reader, prefix string) {
	br := bufio.NewReaderSize(r, maxLine)
	cut := false // the previous piece was cut at maxLine
	for {
		chunk, err := br.ReadSlice('\n')
		// A newline right after a cut ends the line already emitted; it
		// is not an empty line of its own.
		if len(chunk) > 0 && !(cut && err == nil && len(chunk) == 1) {
			if err == nil {
				chunk = bytes.TrimSuffix(chunk[:len(chunk)-1], []byte{'\r'})
			}
			line := prefix + string(chunk)
			s.ring.add(line)
			s.writeConsole(line)
		}
		cut = err == bufio.ErrBufferFull
		if cut {
			continue
		}
		if err != nil {
			return
		}
	}
}
