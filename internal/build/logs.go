package build

import (
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"

	"github.com/nodeboot/nodeboot/internal/contract"
	"github.com/nodeboot/nodeboot/internal/spec"
)

// logsFiles reads logs.remote's CA (a path relative to the project dir)
// into the file the image carries (contract.LogsCA), checked here so that
// a wrong file stops the build rather than the shipping on the node. A
// client certificate is never in the image (`nodeboot logs login`).
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
	return files, nil
}
