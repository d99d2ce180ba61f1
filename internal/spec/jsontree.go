package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// jsonKind is the JSON type of a value, named as JSON Schema names them so
// that messages read the same as an editor's schema diagnostics.
type jsonKind int

const (
	kindNull jsonKind = iota
	kindBool
	kindNumber
	kindString
	kindArray
	kindObject
)

func (k jsonKind) String() string {
	switch k {
	case kindNull:
		return "null"
	case kindBool:
		return "boolean"
	case kindNumber:
		return "number"
	case kindString:
		return "string"
	case kindArray:
		return "array"
	default:
		return "object"
	}
}

// jval is a decoded JSON value that keeps what map[string]any loses: the
// order of object members (so errors come out in document order, not in
// random map order) and whether a key was repeated (encoding/json silently
// keeps the last one, which would hide a mistake in a hand-edited file).
type jval struct {
	kind    jsonKind
	str     string      // kindString
	num     json.Number // kindNumber, exactly as written
	boolean bool        // kindBool
	arr     []*jval     // kindArray
	members []jmember   // kindObject, in document order
}

type jmember struct {
	key string
	val *jval
	dup bool // the key already appeared earlier in the same object
}

// maxJSONDepth bounds nesting: a real nodeboot.json is four levels deep, and
// the bound keeps hostile input from recursing without limit.
const maxJSONDepth = 64

// maxConfigSize bounds the file we read; a config is a few hundred bytes.
const maxConfigSize = 1 << 20

// parseJSONTree decodes exactly one JSON value from data. Errors carry a
// line:column position so a syntax error can be found in the file.
func parseJSONTree(data []byte) (*jval, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // editors on Windows write a BOM
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("empty file: expected a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := readJSONValue(dec, 0)
	if err != nil {
		return nil, positioned(data, dec, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		line, col := lineCol(data, dec.InputOffset())
		return nil, &syntaxError{Line: line, Col: col, Msg: "unexpected data after the top-level JSON value"}
	}
	return v, nil
}

func positioned(data []byte, dec *json.Decoder, err error) error {
	var se *json.SyntaxError
	off := dec.InputOffset()
	switch {
	case errors.As(err, &se):
		off = se.Offset
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return errors.New("invalid JSON: unexpected end of file")
	}
	line, col := lineCol(data, off)
	return &syntaxError{Line: line, Col: col, Msg: "invalid JSON: " + err.Error(), Err: err}
}

// syntaxError is a problem with the JSON text itself, located by line and
// column since there is no JSON path to name.
type syntaxError struct {
	Line, Col int
	Msg       string
	Err       error
}

func (e *syntaxError) Error() string { return fmt.Sprintf("%d:%d: %s", e.Line, e.Col, e.Msg) }
func (e *syntaxError) Unwrap() error { return e.Err }

func lineCol(data []byte, off int64) (line, col int) {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	if off < 0 {
		off = 0
	}
	before := data[:off]
	line = bytes.Count(before, []byte("\n")) + 1
	col = int(off) - (bytes.LastIndexByte(before, '\n') + 1) + 1
	return line, col
}

func readJSONValue(dec *json.Decoder, depth int) (*jval, error) {
	if depth > maxJSONDepth {
		return nil, fmt.Errorf("nested deeper than %d levels", maxJSONDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case nil:
		return &jval{kind: kindNull}, nil
	case bool:
		return &jval{kind: kindBool, boolean: t}, nil
	case json.Number:
		return &jval{kind: kindNumber, num: t}, nil
	case string:
		return &jval{kind: kindString, str: t}, nil
	case json.Delim:
		switch t {
		case '[':
			v := &jval{kind: kindArray}
			for dec.More() {
				e, err := readJSONValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				v.arr = append(v.arr, e)
			}
			if _, err := dec.Token(); err != nil { // ']'
				return nil, err
			}
			return v, nil
		case '{':
			v := &jval{kind: kindObject}
			seen := map[string]bool{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				key, ok := kt.(string)
				if !ok { // the decoder's own syntax check makes this unreachable
					return nil, fmt.Errorf("object key is %v, not a string", kt)
				}
				e, err := readJSONValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				v.members = append(v.members, jmember{key: key, val: e, dup: seen[key]})
				seen[key] = true
			}
			if _, err := dec.Token(); err != nil { // '}'
				return nil, err
			}
			return v, nil
		}
	}
	return nil, fmt.Errorf("unexpected JSON token %v", tok)
}

// describe names a value for "expected X, got Y" messages: the type, plus the
// value itself when it is short, since "got number 8080.5" says more than
// "got number".
func (v *jval) describe() string {
	switch v.kind {
	case kindNumber:
		return "number " + string(v.num)
	case kindString:
		if len(v.str) <= 40 {
			return "string " + strconv.Quote(v.str)
		}
	case kindBool:
		return "boolean " + strconv.FormatBool(v.boolean)
	}
	return v.kind.String()
}

// jsonPath renders the location of a value the way people write it in
// JavaScript: apps[1].env.PORT, or env["my.key"] when a key is not a plain
// identifier.
type jsonPath string

func (p jsonPath) key(k string) jsonPath {
	if isPlainKey(k) {
		if p == "" {
			return jsonPath(k)
		}
		return p + "." + jsonPath(k)
	}
	return p + jsonPath("["+strconv.Quote(k)+"]")
}

func (p jsonPath) index(i int) jsonPath {
	return p + jsonPath("["+strconv.Itoa(i)+"]")
}

func isPlainKey(k string) bool {
	if k == "" {
		return false
	}
	for i, r := range k {
		switch {
		case r == '_' || r == '$' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z':
		case i > 0 && (r >= '0' && r <= '9' || r == '-'):
		default:
			return false
		}
	}
	return !strings.HasSuffix(k, "-")
}
