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
	// ClientCert describes the client certificate the node presents
	// (LogsClientFile): its subject and expiry, never the key; empty when
	// it has none.
	ClientCert string `json:"clientCert,omitempty"`
}

// Where an image keeps the remote log endpoint's CA (nodeboot.json
// "logs.remote.ca"): written at build time, hidden from the apps'
// sandboxes like the rest of /etc/nodeboot. A CA is public; a client key
// is not, and is never in the image (LogsClientFile).
const (
	LogsDir = "/etc/nodeboot/logs"
	LogsCA  = LogsDir + "/ca.pem"
	// LogsSpool is the buffer on the data partition.
	LogsSpool = "/data/nodeboot/logship"
)

// LogsClientFile is where a node keeps the client certificate and key it
// presents to a remote log endpoint that requires one (mutual TLS): the
// certificate chain then the key, PEM, mode 0400, root's, in a root-only
// directory. On /data, never in the image, for the reasons of
// FollowAuthFile, and so that each node has a certificate of its own.
// Set with PUT PathLogsAuth (`nodeboot logs login`); read by PID 1 at
// each connection.
const LogsClientFile = "/data/nodeboot/logs-client/client.pem"

// PathLogsAuth: PUT sets the remote log endpoint's client certificate
// (body: LogsClientCredentials), DELETE removes it.
const PathLogsAuth = "/v1/logs/auth"

// MaxLogsCredentialsBytes bounds PUT PathLogsAuth's body (a chain of a
// few certificates and a key).
const MaxLogsCredentialsBytes = 64 << 10

// LogsClientCredentials is PUT PathLogsAuth's body: a client certificate
// (PEM, optionally followed by its intermediates) and its private key
// (PEM).
type LogsClientCredentials struct {
	Cert string `json:"cert"`
	Key  string `json:"key"`
}

// LogsAuthResult answers PUT and DELETE PathLogsAuth; never the key.
type LogsAuthResult struct {
	Endpoint string `json:"endpoint"`
	// Subject and NotAfter describe the certificate stored (PUT).
	Subject  string    `json:"subject,omitempty"`
	NotAfter time.Time `json:"notAfter,omitzero"`
}
