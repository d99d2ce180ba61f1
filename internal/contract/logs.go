package contract

import "time"

// LogsStatus is the "logs" object of GET /v1/status on a node that ships
// its log lines to a remote endpoint (nodeboot.json "logs.remote";
// internal/logship).
type LogsStatus struct {
	// Endpoint is the configured URL, e.g. "syslog+tls://logs.lan:6514".
	Endpoint string `json:"endpoint"`
	// Connected: the last attempt to deliver succeeded and the connection
	// (syslog) is open.
	Connected bool `json:"connected"`
	// BufferedBytes and BufferedLines wait in the buffer on /data.
	BufferedBytes int64 `json:"bufferedBytes"`
	BufferedLines int64 `json:"bufferedLines"`
	// CapBytes bounds the buffer; past it the oldest lines are dropped.
	CapBytes int64 `json:"capBytes"`
	// Delivered and Dropped count lines since PID 1 started.
	Delivered uint64 `json:"delivered"`
	Dropped   uint64 `json:"dropped"`
	// LastError is the latest delivery or buffer error, kept after a
	// later success so an operator can see what happened; LastErrorAt
	// says when.
	LastError   string    `json:"lastError,omitempty"`
	LastErrorAt time.Time `json:"lastErrorAt,omitzero"`
}

// Where an image keeps the remote log endpoint's CA and client
// certificate (nodeboot.json "logs.remote": "ca", "cert", "key"): written
// at build time, hidden from the apps' sandboxes like the rest of
// /etc/nodeboot, the key root-only.
const (
	LogsDir        = "/etc/nodeboot/logs"
	LogsCA         = LogsDir + "/ca.pem"
	LogsClientCert = LogsDir + "/client.pem"
	LogsClientKey  = LogsDir + "/client.key"
	// LogsSpool is the buffer on the data partition.
	LogsSpool = "/data/nodeboot/logship"
)
