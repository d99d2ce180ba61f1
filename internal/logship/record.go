// Package logship sends the node's log lines (every app's output and PID
// 1's own log) to a remote endpoint: syslog (RFC 5424 messages, RFC 5425
// octet-counted framing over TLS, or plain TCP when explicitly insecure)
// or OTLP/HTTP logs. Lines are first appended to a bounded buffer on
// /data (spool.go), so they wait out an unreachable endpoint and a
// reboot, and are sent from it in order; past the cap the oldest lines
// are dropped and counted. Adding a line never blocks: the apps' own
// logging must not slow down because a remote endpoint is slow or gone.
package logship

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"
)

// Stream says where a line came from.
type Stream uint8

const (
	// Init is PID 1's own log (App is empty).
	Init Stream = iota
	// Stdout and Stderr are an app's output.
	Stdout
	Stderr
	// Notice is the shipper's own note inserted into the stream ("N lines
	// dropped"), sent like an Init line.
	Notice
)

// Record is one log line.
type Record struct {
	Time   time.Time
	Stream Stream
	App    string // the app's name; "" for PID 1
	Msg    string
}

// maxApp bounds an app name in a record (app names are at most 32
// characters; the byte leaves room).
const maxApp = 255

// MaxMsg bounds a line: the supervisor cuts app lines at 64 KiB already.
const MaxMsg = 64 << 10

// A spool record on disk is
//
//	u32 length of body | u32 CRC-32C of body | body
//	body: i64 Unix nanoseconds | u8 stream | u8 len(app) | app | msg
//
// The checksum lets a reader tell a torn or damaged record (a power cut in
// the middle of a write, a bad sector) from a real one and skip it rather
// than ship garbage or crash.
const (
	frameHeader = 8
	bodyFixed   = 8 + 1 + 1
	maxBody     = bodyFixed + maxApp + MaxMsg
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errCorrupt marks bytes that are not a record.
var errCorrupt = errors.New("corrupt record")

// appendRecord appends r's frame to b.
func appendRecord(b []byte, r Record) []byte {
	app := r.App
	if len(app) > maxApp {
		app = app[:maxApp]
	}
	msg := r.Msg
	if len(msg) > MaxMsg {
		msg = msg[:MaxMsg]
	}
	n := bodyFixed + len(app) + len(msg)
	start := len(b)
	b = binary.LittleEndian.AppendUint32(b, uint32(n))
	b = binary.LittleEndian.AppendUint32(b, 0) // the checksum, below
	body := len(b)
	b = binary.LittleEndian.AppendUint64(b, uint64(r.Time.UnixNano()))
	b = append(b, byte(r.Stream), byte(len(app)))
	b = append(b, app...)
	b = append(b, msg...)
	binary.LittleEndian.PutUint32(b[start+4:], crc32.Checksum(b[body:], castagnoli))
	return b
}

// decodeRecord reads the record at the start of b. It returns the record
// and its size on disk; io.ErrUnexpectedEOF-like shortness is errShort (the
// rest may still be coming), anything else errCorrupt.
func decodeRecord(b []byte) (Record, int, error) {
	if len(b) < frameHeader {
		return Record{}, 0, errShort
	}
	n := int(binary.LittleEndian.Uint32(b))
	if n < bodyFixed || n > maxBody {
		return Record{}, 0, fmt.Errorf("%w: length %d", errCorrupt, n)
	}
	if len(b) < frameHeader+n {
		return Record{}, 0, errShort
	}
	body := b[frameHeader : frameHeader+n]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(b[4:]) {
		return Record{}, 0, fmt.Errorf("%w: checksum mismatch", errCorrupt)
	}
	st := Stream(body[8])
	al := int(body[9])
	if st > Notice || bodyFixed+al > n {
		return Record{}, 0, fmt.Errorf("%w: bad stream or app length", errCorrupt)
	}
	r := Record{
		Time:   time.Unix(0, int64(binary.LittleEndian.Uint64(body))),
		Stream: st,
		App:    string(body[bodyFixed : bodyFixed+al]),
		Msg:    string(body[bodyFixed+al:]),
	}
	return r, frameHeader + n, nil
}

// errShort: the bytes end inside a record.
var errShort = errors.New("record cut short")
