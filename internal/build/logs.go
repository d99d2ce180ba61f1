package build

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"

	"github.com/nodeboot/nodeboot/internal/contract"
	"github.com/nodeboot/nodeboot/internal/spec"
)

// logsFiles reads logs.remote's CA and client certificate (paths relative
// to the project dir) into the files the image carries (contract.LogsCA,
// LogsClientCert, LogsClientKey), checked here so that a wrong file stops
// the build rather than the shipping on the node.
func logsFiles(dir string, l *spec.LogsConfig) (map[string][]byte, error) {
	if l == nil || l.Remote == nil {
		return nil, nil
	}
	r := l.Remote
	read := func(key, p string) ([]byte, error) {
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("nodeboot.json logs.remote.%s: %w; name a PEM file, relative to %s", key, err, dir)
		}
		return b, nil
	}
	files := map[string][]byte{}
	if r.CA != "" {
		ca, err := read("ca", r.CA)
		if err != nil {
			return nil, err
		}
		if !x509.NewCertPool().AppendCertsFromPEM(ca) {
			return nil, fmt.Errorf("nodeboot.json logs.remote.ca: %s holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\"): give the certificate of the CA that signed the endpoint's", r.CA)
		}
		files[contract.LogsCA] = ca
	}
	if r.Cert != "" {
		cert, err := read("cert", r.Cert)
		if err != nil {
			return nil, err
		}
		key, err := read("key", r.Key)
		if err != nil {
			return nil, err
		}
		if _, err := tls.X509KeyPair(cert, key); err != nil {
			return nil, fmt.Errorf("nodeboot.json logs.remote.cert and key: %w; give the client certificate and its own private key, as PEM", err)
		}
		files[contract.LogsClientCert] = cert
		files[contract.LogsClientKey] = key
	}
	return files, nil
}
