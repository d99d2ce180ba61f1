package logship

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/protobuf/proto"
)

// errPermanent marks a batch the endpoint will never take (OTLP's 400):
// retrying would hold every later line back forever, so it is dropped and
// counted.
var errPermanent = errors.New("refused for good")

// otlpTransport POSTs OTLP/HTTP protobuf requests (POST /v1/logs,
// application/x-protobuf). The body is an ExportLogsServiceRequest; it is
// built as logs.v1.LogsData, whose encoding is the same (both are field 1,
// repeated ResourceLogs), so PID 1 does not link the gRPC service stubs
// that share the collector package.
type otlpTransport struct {
	name     string
	url      string
	client   *http.Client
	hostname string
	ok       atomic.Bool
}

func (t *otlpTransport) connected() bool { return t.ok.Load() }

func (t *otlpTransport) close() { t.client.CloseIdleConnections() }

func strAttr(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

// otlpRequest groups runs of consecutive lines of one app under one
// resource (service.name = the app, host.name = the node), so the order
// of lines across apps is kept.
func otlpRequest(recs []Record, hostname string) *logspb.LogsData {
	req := &logspb.LogsData{}
	var cur *logspb.ScopeLogs
	curApp := "\x00"
	for _, r := range recs {
		app := r.App
		if app == "" {
			app = InitAppName
		}
		if app != curApp {
			attrs := []*commonpb.KeyValue{strAttr("service.name", app)}
			if hostname != "" {
				attrs = append(attrs, strAttr("host.name", hostname))
			}
			cur = &logspb.ScopeLogs{Scope: &commonpb.InstrumentationScope{Name: "nodeboot"}}
			req.ResourceLogs = append(req.ResourceLogs, &logspb.ResourceLogs{
				Resource:  &resourcepb.Resource{Attributes: attrs},
				ScopeLogs: []*logspb.ScopeLogs{cur},
			})
			curApp = app
		}
		sevN, sevT := logspb.SeverityNumber_SEVERITY_NUMBER_INFO, "INFO"
		var attrs []*commonpb.KeyValue
		switch r.Stream {
		case Stderr:
			sevN, sevT = logspb.SeverityNumber_SEVERITY_NUMBER_ERROR, "ERROR"
			attrs = append(attrs, strAttr("log.iostream", "stderr"))
		case Stdout:
			attrs = append(attrs, strAttr("log.iostream", "stdout"))
		case Notice:
			sevN, sevT = logspb.SeverityNumber_SEVERITY_NUMBER_WARN, "WARN"
		}
		cur.LogRecords = append(cur.LogRecords, &logspb.LogRecord{
			TimeUnixNano:         uint64(r.Time.UnixNano()),
			ObservedTimeUnixNano: uint64(r.Time.UnixNano()),
			SeverityNumber:       sevN,
			SeverityText:         sevT,
			Body:                 &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: r.Msg}},
			Attributes:           attrs,
		})
	}
	return req
}

func (t *otlpTransport) send(ctx context.Context, recs []Record) error {
	body, err := proto.Marshal(otlpRequest(recs, t.hostname))
	if err != nil {
		return fmt.Errorf("encoding OTLP: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%s: %w", t.name, err)
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	resp, err := t.client.Do(req)
	if err != nil {
		t.ok.Store(false)
		return fmt.Errorf("posting to %s: %w", t.name, explainTLS(err))
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 == 2 {
		t.ok.Store(true)
		return nil
	}
	t.ok.Store(false)
	what := strings.TrimSpace(strings.ToValidUTF8(string(snippet), "?"))
	if resp.Header.Get("Content-Type") == "application/x-protobuf" {
		what = "" // a google.rpc.Status: the code says enough
	}
	err = fmt.Errorf("%s answered %s %s", t.name, resp.Status, what)
	if resp.StatusCode == http.StatusBadRequest {
		// OTLP/HTTP: 400 is not retryable.
		return fmt.Errorf("%w: %w", errPermanent, err)
	}
	return err
}
