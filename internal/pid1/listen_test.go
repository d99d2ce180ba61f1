package pid1

import "testing"

func TestTCPListening(t *testing.T) {
	// Read off a guest: node listening on :: port 8080 (tcp6) while the
	// init's API listens on 9443 and a client connection is open.
	tcp6 := []byte(`  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000000000000:24E3 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4243 1 0000000000000000 100 0 0 10 0
`)
	tcp := []byte(`  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0050 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 5000 1 0000000000000000 20 4 30 10 -1
`)
	for _, c := range []struct {
		table []byte
		port  int
		want  bool
	}{
		{tcp6, 8080, true},
		{tcp6, 9443, true},
		{tcp6, 80, false},
		// Port 80 has only an established connection, not a listener.
		{tcp, 80, false},
		{tcp, 8080, false},
		{nil, 8080, false},
		{[]byte("garbage\n0: x 0A\n"), 8080, false},
	} {
		if got := tcpListening(c.table, c.port); got != c.want {
			t.Errorf("port %d: %v, want %v", c.port, got, c.want)
		}
	}
}
