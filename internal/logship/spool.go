package logship

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// The spool is the buffer on /data: numbered segment files of records
// (record.go) and a cursor file saying how far the sender got. Lines are
// appended to the newest segment and sent from the oldest; a segment
// wholly sent is deleted. Segments bound what one drop costs: past the
// cap the oldest segment is deleted whole, its unsent lines counted as
// dropped, so dropping never rewrites a file.
type spool struct {
	dir    string
	cap    int64
	segMax int64

	mu       sync.Mutex
	segs     []segment // oldest first; the last is written to; segs[0] holds the cursor
	active   *os.File
	cur      position
	dropped  uint64 // lines dropped for the cap since the spool was opened
	unsaid   uint64 // dropped lines not yet noted in the stream
	skipped  int64  // unreadable bytes skipped since the spool was opened
	unsaidSk int64  // skipped bytes not yet noted in the stream
	lastErr  error  // the latest buffer error (a failed write), for status
	closed   bool   // close was called: no file is opened or written again
}

// errClosed is what a closed buffer answers.
var errClosed = errors.New("the log buffer is closed (the node is going down)")

type segment struct {
	seq   uint64
	size  int64
	lines int64
}

// position is the sender's cursor: the next record is at off in segment
// seq, after lines records of it.
type position struct {
	seq   uint64
	off   int64
	lines int64
}

const (
	segSuffix  = ".seg"
	cursorFile = "cursor"
	// segmentsPerCap: the cap is split into this many segments, so a drop
	// loses at most an eighth of the buffer.
	segmentsPerCap = 8
)

func segName(seq uint64) string { return fmt.Sprintf("%016x%s", seq, segSuffix) }

// openSpool opens (creating) the spool in dir, bounded to capBytes. What a
// previous boot left is kept and sent first; unreadable parts are skipped
// when reached, never fatal: a damaged buffer must not stop the node
// logging.
func openSpool(dir string, capBytes int64) (*spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("log buffer: %w", err)
	}
	s := &spool{dir: dir, cap: capBytes, segMax: max(capBytes/segmentsPerCap, 4096)}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("log buffer: %w", err)
	}
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, segSuffix) || !e.Type().IsRegular() {
			continue
		}
		seq, err := strconv.ParseUint(strings.TrimSuffix(name, segSuffix), 16, 64)
		if err != nil || segName(seq) != name {
			continue
		}
		sz, lines := scanSegment(filepath.Join(dir, name))
		s.segs = append(s.segs, segment{seq: seq, size: sz, lines: lines})
	}
	slices.SortFunc(s.segs, func(a, b segment) int {
		if a.seq < b.seq {
			return -1
		}
		return 1
	})
	if c, ok := s.readCursor(); ok {
		// Segments before the cursor's were sent: a crash came between
		// sending and deleting them.
		for len(s.segs) > 0 && s.segs[0].seq < c.seq {
			os.Remove(filepath.Join(dir, segName(s.segs[0].seq)))
			s.segs = s.segs[1:]
		}
		if len(s.segs) > 0 && s.segs[0].seq == c.seq && atRecord(filepath.Join(dir, segName(c.seq)), c) {
			s.cur = c
		}
	}
	next := uint64(1)
	if len(s.segs) > 0 {
		next = s.segs[len(s.segs)-1].seq + 1
		if s.cur.seq != s.segs[0].seq {
			s.cur = position{seq: s.segs[0].seq}
		}
	}
	// A new segment for this boot: the last one may end in a torn write,
	// and appending after it would hide every later line from the reader.
	if err := s.newSegment(next); err != nil {
		return nil, err
	}
	if len(s.segs) == 1 {
		s.cur = position{seq: next}
	}
	// Dropping an old boot's lines to a smaller cap happens here.
	s.enforceCap(0)
	return s, nil
}

// scanSegment counts the readable records of a segment file.
func scanSegment(path string) (size, lines int64) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0
	}
	for off := 0; off < len(b); {
		_, n, err := decodeRecord(b[off:])
		if err != nil {
			break
		}
		off += n
		lines++
	}
	return int64(len(b)), lines
}

// atRecord reports whether c points at a record boundary of the segment
// at path, after c.lines records: a cursor from a damaged file must not
// send the reader into the middle of a record.
func atRecord(path string, c position) bool {
	b, err := os.ReadFile(path)
	if err != nil || c.off > int64(len(b)) {
		return false
	}
	recs, used := decodeRecords(b[:c.off], len(b))
	return int64(used) == c.off && int64(len(recs)) == c.lines
}

func (s *spool) readCursor() (position, bool) {
	b, err := os.ReadFile(filepath.Join(s.dir, cursorFile))
	if err != nil {
		return position{}, false
	}
	return parseCursor(b)
}

// parseCursor reads "seq off lines\n"; anything else is no cursor (the
// spool is then sent from its oldest segment: lines may go twice, none is
// lost).
func parseCursor(b []byte) (position, bool) {
	f := strings.Fields(string(b))
	if len(f) != 3 || len(b) > 64 {
		return position{}, false
	}
	seq, err1 := strconv.ParseUint(f[0], 16, 64)
	off, err2 := strconv.ParseInt(f[1], 10, 64)
	lines, err3 := strconv.ParseInt(f[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || off < 0 || lines < 0 {
		return position{}, false
	}
	return position{seq: seq, off: off, lines: lines}, true
}

// writeCursor replaces the cursor file atomically but without fsync: it
// is written after every delivered batch, and a cursor lost to a power
// cut only means some lines are sent twice.
func (s *spool) writeCursor() error {
	tmp := filepath.Join(s.dir, cursorFile+".tmp")
	if err := os.WriteFile(tmp, fmt.Appendf(nil, "%x %d %d\n", s.cur.seq, s.cur.off, s.cur.lines), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(s.dir, cursorFile))
}

func (s *spool) newSegment(seq uint64) error {
	f, err := os.OpenFile(filepath.Join(s.dir, segName(seq)), os.O_WRONLY|os.O_CREATE|os.O_APPEND|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("log buffer: %w", err)
	}
	if s.active != nil {
		s.active.Close()
	}
	s.active = f
	s.segs = append(s.segs, segment{seq: seq})
	return nil
}

// enforceCap drops the oldest segments until adding more bytes fits the
// cap (or only the segment being written is left).
func (s *spool) enforceCap(more int64) {
	for len(s.segs) > 1 && s.total()+more > s.cap {
		old := s.segs[0]
		// segs[0] holds the cursor: its lines from the cursor on are lost.
		lost := uint64(old.lines - s.cur.lines)
		s.dropped += lost
		s.unsaid += lost
		os.Remove(filepath.Join(s.dir, segName(old.seq)))
		s.segs = s.segs[1:]
		s.cur = position{seq: s.segs[0].seq}
		_ = s.writeCursor()
	}
}

func (s *spool) total() int64 {
	var t int64
	for _, g := range s.segs {
		t += g.size
	}
	return t
}

// append writes recs to the newest segment, starting a new one when it
// is full and dropping the oldest past the cap.
func (s *spool) append(recs []Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	var buf []byte
	var n int64
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		err := s.write(buf, n)
		buf, n = buf[:0], 0
		return err
	}
	var firstErr error
	for _, r := range recs {
		before := len(buf)
		buf = appendRecord(buf, r)
		if int64(len(buf)) > s.segMax && before > 0 {
			rec := slices.Clone(buf[before:])
			buf = buf[:before]
			if err := flush(); err != nil && firstErr == nil {
				firstErr = err
			}
			buf = append(buf, rec...)
		}
		n++
	}
	if err := flush(); err != nil && firstErr == nil {
		firstErr = err
	}
	if firstErr != nil {
		s.lastErr = firstErr
	}
	return firstErr
}

// write appends one chunk of whole records (under mu).
func (s *spool) write(b []byte, lines int64) error {
	last := &s.segs[len(s.segs)-1]
	if last.size > 0 && last.size+int64(len(b)) > s.segMax {
		if err := s.newSegment(last.seq + 1); err != nil {
			return err
		}
		last = &s.segs[len(s.segs)-1]
	}
	s.enforceCap(int64(len(b)))
	last = &s.segs[len(s.segs)-1]
	n, err := s.active.Write(b)
	if err != nil {
		// Cut a partial record off, so the segment stays readable.
		if n > 0 {
			_ = s.active.Truncate(last.size)
		}
		return fmt.Errorf("writing the log buffer: %w", err)
	}
	last.size += int64(n)
	last.lines += lines
	return nil
}

// next returns the records from the cursor on, at most about maxBytes of
// them (at least one), and the position after them; none when everything
// was sent. Unreadable bytes are skipped (counted) on the way.
func (s *spool) next(maxBytes int) ([]Record, position, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, s.cur, nil
	}
	for {
		seg := s.segs[0]
		if s.cur.off >= seg.size {
			if len(s.segs) == 1 {
				return nil, s.cur, nil
			}
			// Sent in full: on to the next segment.
			os.Remove(filepath.Join(s.dir, segName(seg.seq)))
			s.segs = s.segs[1:]
			s.cur = position{seq: s.segs[0].seq}
			if err := s.writeCursor(); err != nil {
				s.lastErr = fmt.Errorf("saving the log buffer's cursor: %w", err)
			}
			continue
		}
		recs, pos, err := s.read(seg, maxBytes)
		if err != nil {
			return nil, s.cur, err
		}
		if len(recs) > 0 {
			return recs, pos, nil
		}
		// Nothing readable from the cursor to the segment's end.
		sk := seg.size - s.cur.off
		s.skipped += sk
		s.unsaidSk += sk
		s.cur = position{seq: seg.seq, off: seg.size, lines: seg.lines}
	}
}

// read decodes records of seg from the cursor on (under mu). It stops at
// the first unreadable record; none read means the rest is unreadable.
func (s *spool) read(seg segment, maxBytes int) ([]Record, position, error) {
	f, err := os.Open(filepath.Join(s.dir, segName(seg.seq)))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, s.cur, nil // deleted under us: treated as unreadable
		}
		return nil, s.cur, fmt.Errorf("reading the log buffer: %w", err)
	}
	defer f.Close()
	want := min(int64(max(maxBytes, frameHeader+maxBody)), seg.size-s.cur.off)
	b := make([]byte, want)
	n, err := f.ReadAt(b, s.cur.off)
	if err != nil && err != io.EOF {
		return nil, s.cur, fmt.Errorf("reading the log buffer: %w", err)
	}
	recs, used := decodeRecords(b[:n], maxBytes)
	pos := s.cur
	pos.off += int64(used)
	pos.lines += int64(len(recs))
	return recs, pos, nil
}

// decodeRecords decodes whole records from b, stopping at the first that
// is unreadable or cut short, or once maxBytes are used (always at least
// one record when b starts with one). It is what reads untrusted bytes
// (a damaged buffer), hence FuzzDecodeRecords.
func decodeRecords(b []byte, maxBytes int) ([]Record, int) {
	var recs []Record
	used := 0
	for used < len(b) {
		r, n, err := decodeRecord(b[used:])
		if err != nil {
			break
		}
		if used > 0 && used+n > maxBytes {
			break
		}
		recs = append(recs, r)
		used += n
	}
	return recs, used
}

// commit moves the cursor to pos once the records before it were sent,
// unless the cap dropped that segment meanwhile.
func (s *spool) commit(pos position) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || pos.seq != s.cur.seq || pos.off < s.cur.off {
		return nil
	}
	s.cur = pos
	if err := s.writeCursor(); err != nil {
		s.lastErr = fmt.Errorf("saving the log buffer's cursor: %w", err)
		return s.lastErr
	}
	return nil
}

// unsaidCounts returns what the stream has not been told yet: dropped
// lines and skipped bytes.
func (s *spool) unsaidCounts() (uint64, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.unsaid, s.unsaidSk
}

// said subtracts what a delivered notice told.
func (s *spool) said(lines uint64, skipped int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unsaid -= min(lines, s.unsaid)
	s.unsaidSk -= min(skipped, s.unsaidSk)
}

type spoolStats struct {
	bytes, lines int64
	dropped      uint64
	skipped      int64
}

func (s *spool) stats() spoolStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := spoolStats{dropped: s.dropped, skipped: s.skipped}
	for _, g := range s.segs {
		st.bytes += g.size
		st.lines += g.lines
	}
	st.bytes -= s.cur.off
	st.lines -= s.cur.lines
	return st
}

func (s *spool) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.active == nil {
		return nil
	}
	err := s.active.Close()
	s.active = nil
	return err
}
