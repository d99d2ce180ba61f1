package logship

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	"google.golang.org/protobuf/proto"

	"github.com/nodeboot/nodeboot/internal/contract"
	"github.com/nodeboot/nodeboot/internal/logship/logshiptest"
)

// otlpReceiver is an OTLP/HTTP logs endpoint over TLS: it decodes each
// request with the official protobuf types and answers with status()'s
// code.
type otlpReceiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	status int
	got    []*logspb.LogRecord
	apps   []string // service.name of each record
	hosts  []string
	bad    []string // what was wrong with a request
}

func newOTLPReceiver(t *testing.T, ca *logshiptest.CA) *otlpReceiver {
	r := &otlpReceiver{status: http.StatusOK}
	r.srv = httptest.NewUnstartedServer(http.HandlerFunc(r.serve))
	cfg, err := logshiptest.ServerTLS(ca, nil, net.IPv4(127, 0, 0, 1))
	if err != nil {
		t.Fatal(err)
	}
	r.srv.TLS = cfg
	r.srv.StartTLS()
	t.Cleanup(r.srv.Close)
	return r
}

func (r *otlpReceiver) serve(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if req.Method != http.MethodPost || req.URL.Path != "/v1/logs" || req.Header.Get("Content-Type") != "application/x-protobuf" {
		r.bad = append(r.bad, req.Method+" "+req.URL.Path+" "+req.Header.Get("Content-Type"))
		w.WriteHeader(http.StatusNotFound)
		return
	}
	if r.status != http.StatusOK {
		w.WriteHeader(r.status)
		io.WriteString(w, "not now")
		return
	}
	body, _ := io.ReadAll(req.Body)
	var data logspb.LogsData
	if err := proto.Unmarshal(body, &data); err != nil {
		r.bad = append(r.bad, err.Error())
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	for _, rl := range data.ResourceLogs {
		var app, host string
		for _, kv := range rl.Resource.GetAttributes() {
			switch kv.Key {
			case "service.name":
				app = kv.Value.GetStringValue()
			case "host.name":
				host = kv.Value.GetStringValue()
			}
		}
		for _, sl := range rl.ScopeLogs {
			for _, lr := range sl.LogRecords {
				r.got = append(r.got, lr)
				r.apps = append(r.apps, app)
				r.hosts = append(r.hosts, host)
			}
		}
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(http.StatusOK)
}

func (r *otlpReceiver) setStatus(code int) {
	r.mu.Lock()
	r.status = code
	r.mu.Unlock()
}

func (r *otlpReceiver) bodies() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, lr := range r.got {
		out = append(out, lr.Body.GetStringValue())
	}
	return out
}

func TestOTLPDeliversInOrderAndWaitsOutErrors(t *testing.T) {
	ca, err := logshiptest.NewCA("otlp CA")
	if err != nil {
		t.Fatal(err)
	}
	recv := newOTLPReceiver(t, ca)
	recv.setStatus(http.StatusServiceUnavailable)
	cfg := Config{
		Endpoint: Endpoint{Name: "otlp+https://" + recv.srv.Listener.Addr().String(), Kind: OTLP,
			URL: recv.srv.URL + "/v1/logs", TLS: &tls.Config{RootCAs: ca.Pool()}},
		Dir: t.TempDir(), Cap: 1 << 20, Hostname: "edge-2",
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
	}
	s, _ := start(t, cfg)
	s.Add(Record{Stream: Init, Msg: line(0)})
	s.Add(Record{Stream: Stdout, App: "web", Msg: line(1)})
	s.Add(Record{Stream: Stderr, App: "web", Msg: line(2)})
	s.Add(Record{Stream: Init, Msg: line(3)})
	st := waitStatus(t, s, "the endpoint's refusal", func(st contract.LogsStatus) bool { return st.LastError != "" })
	if !strings.Contains(st.LastError, "answered 503 Service Unavailable not now") || st.Connected || st.BufferedLines != 4 {
		t.Errorf("status while the endpoint answers 503: %+v", st)
	}
	recv.setStatus(http.StatusOK)
	waitStatus(t, s, "delivery", func(st contract.LogsStatus) bool { return st.Delivered == 4 && st.Connected })
	if got := strings.Join(recv.bodies(), ","); got != "line 00000,line 00001,line 00002,line 00003" {
		t.Errorf("bodies %s", got)
	}
	recv.mu.Lock()
	defer recv.mu.Unlock()
	if len(recv.bad) > 0 {
		t.Errorf("bad requests: %v", recv.bad)
	}
	if got := strings.Join(recv.apps, ","); got != "nodeboot,web,web,nodeboot" {
		t.Errorf("service.name %s", got)
	}
	if recv.hosts[0] != "edge-2" {
		t.Errorf("host.name %q", recv.hosts[0])
	}
	if lr := recv.got[2]; lr.SeverityNumber != logspb.SeverityNumber_SEVERITY_NUMBER_ERROR || lr.TimeUnixNano == 0 ||
		len(lr.Attributes) != 1 || lr.Attributes[0].Value.GetStringValue() != "stderr" {
		t.Errorf("stderr record %v", lr)
	}
}

func TestOTLPBadRequestIsDroppedNotRetriedForever(t *testing.T) {
	ca, err := logshiptest.NewCA("otlp CA")
	if err != nil {
		t.Fatal(err)
	}
	recv := newOTLPReceiver(t, ca)
	recv.setStatus(http.StatusBadRequest)
	cfg := Config{
		Endpoint: Endpoint{Name: "otlp+https://x", Kind: OTLP, URL: recv.srv.URL + "/v1/logs", TLS: &tls.Config{RootCAs: ca.Pool()}},
		Dir:      t.TempDir(), Cap: 1 << 20, MinBackoff: 10 * time.Millisecond,
	}
	s, _ := start(t, cfg)
	s.Add(Record{Stream: Stdout, App: "web", Msg: "refused"})
	waitStatus(t, s, "the batch dropped", func(st contract.LogsStatus) bool { return st.Dropped == 1 && st.BufferedLines == 0 })
	recv.setStatus(http.StatusOK)
	s.Add(Record{Stream: Stdout, App: "web", Msg: "next"})
	waitStatus(t, s, "the next line delivered", func(st contract.LogsStatus) bool { return st.Delivered >= 1 })
	b := recv.bodies()
	if len(b) != 2 || b[0] != "log shipper: 1 lines refused by the endpoint and dropped" || b[1] != "next" {
		t.Errorf("received %q", b)
	}
}
