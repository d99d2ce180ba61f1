package pid1

import (
	"bufio"
	"bytes"
	"strconv"
	"strings"
)

// tcpListening reports whether a /proc/net/tcp or /proc/net/tcp6 table
// holds a socket in the LISTEN state on port. Reading the kernel's table
// costs the init far less CPU than a connect to the port would (a socket,
// a loopback handshake and a reset each time), and the init polls it while
// node starts, when on a one-CPU VM every millisecond it spends is one node
// waits for.
func tcpListening(table []byte, port int) bool {
	want := strings.ToUpper(strconv.FormatInt(int64(port), 16))
	for len(want) < 4 {
		want = "0" + want
	}
	sc := bufio.NewScanner(bytes.NewReader(table))
	first := true
	for sc.Scan() {
		if first { // the header line
			first = false
			continue
		}
		// "  0: 00000000:1F90 00000000:0000 0A ..."
		f := strings.Fields(sc.Text())
		if len(f) < 4 || f[3] != "0A" {
			continue
		}
		_, p, ok := strings.Cut(f[1], ":")
		if ok && strings.EqualFold(p, want) {
			return true
		}
	}
	return false
}
