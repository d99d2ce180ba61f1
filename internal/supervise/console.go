package supervise

import (
	"bufio"
	"bytes"
	"io"
	"sync"
)

// consoleMu serialises console writes of all services: they usually share
// one writer (/dev/console), and a line must never be interleaved with
// another.
var consoleMu sync.Mutex

// writeConsole writes line plus a newline with a single Write. Errors are
// dropped: a console that went away must not stop the app.
func writeConsole(w io.Writer, line string) {
	if w == nil {
		return
	}
	buf := make([]byte, 0, len(line)+1)
	buf = append(buf, line...)
	buf = append(buf, '\n')
	consoleMu.Lock()
	defer consoleMu.Unlock()
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
			writeConsole(s.opts.Console, line)
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
