package creds

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/google/renameio/v2"

	"github.com/nodeboot/nodeboot/internal/contract"
)

// DefaultPort is the management API's port (docs/api.md).
const DefaultPort = contract.APIPort

// Node is one entry of nodes.json.
type Node struct {
	Address string `json:"address"` // host:port
}

type nodesFile struct {
	Nodes map[string]Node `json:"nodes"`
}

// nodeNameRE keeps names apart from addresses: no dots or colons, so that
// "pi.lan" or "10.0.0.5:9443" is never mistaken for a name.
var nodeNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ReadNodes returns the named nodes of projectDir; none when nodes.json
// does not exist yet.
func ReadNodes(projectDir string) (map[string]Node, error) {
	path := filepath.Join(projectDir, Dir, NodesFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]Node{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	nodes, err := ParseNodes(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (fix it, or delete it and run nodeboot run again to record the local VM)", path, err)
	}
	return nodes, nil
}

// ParseNodes parses the contents of nodes.json strictly: unknown keys,
// bad names and addresses without a port are errors.
func ParseNodes(b []byte) (map[string]Node, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var f nodesFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("not valid nodes JSON: %w", err)
	}
	if dec.More() {
		return nil, errors.New("not valid nodes JSON: more than one value")
	}
	if f.Nodes == nil {
		f.Nodes = map[string]Node{}
	}
	for name, n := range f.Nodes {
		if err := checkName(name); err != nil {
			return nil, err
		}
		if _, _, err := splitAddress(n.Address); err != nil {
			return nil, fmt.Errorf("node %q: %w", name, err)
		}
	}
	return f.Nodes, nil
}

// RecordNode names address (host:port) in projectDir's nodes.json,
// replacing an earlier entry of that name. The file is replaced atomically.
func RecordNode(projectDir, name, address string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if _, _, err := splitAddress(address); err != nil {
		return err
	}
	nodes, err := ReadNodes(projectDir)
	if err != nil {
		return err
	}
	nodes[name] = Node{Address: address}
	b, err := json.MarshalIndent(nodesFile{Nodes: nodes}, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding nodes.json: %w", err)
	}
	dir := filepath.Join(projectDir, Dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	path := filepath.Join(dir, NodesFile)
	if err := renameio.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// Resolve turns a node argument into host:port: a name from nodes.json, or
// host[:port] with the port defaulting to 9443. A bare word that is no
// recorded name is refused rather than looked up in DNS, because it is far
// more often a mistyped name than a single-label host name (write
// "host:9443" to mean the host).
func Resolve(projectDir, arg string) (string, error) {
	if arg == "" {
		return "", errors.New("no node given: name one from .nodeboot/nodes.json or give host[:port]")
	}
	nodes, err := ReadNodes(projectDir)
	if err != nil {
		return "", err
	}
	if n, ok := nodes[arg]; ok {
		return n.Address, nil
	}
	if nodeNameRE.MatchString(arg) && arg != "localhost" {
		return "", fmt.Errorf("no node named %q in %s (known: %s); give host[:port] for another machine", arg, filepath.Join(projectDir, Dir, NodesFile), known(nodes))
	}
	return addressOf(arg)
}

// addressOf completes host[:port] to host:port.
func addressOf(arg string) (string, error) {
	if host, port, err := splitAddress(arg); err == nil {
		return net.JoinHostPort(host, port), nil
	}
	// No port: a host name, an IPv4 address, or an IPv6 address with or
	// without brackets.
	host := strings.TrimSuffix(strings.TrimPrefix(arg, "["), "]")
	if err := checkHost(host); err != nil {
		return "", fmt.Errorf("%q is neither a node name nor host[:port]: %w", arg, err)
	}
	return net.JoinHostPort(host, strconv.Itoa(DefaultPort)), nil
}

// splitAddress checks host:port.
func splitAddress(addr string) (host, port string, err error) {
	host, port, err = net.SplitHostPort(addr)
	if err != nil {
		return "", "", fmt.Errorf("address %q: want host:port", addr)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return "", "", fmt.Errorf("address %q: the port must be a number from 1 to 65535", addr)
	}
	if err := checkHost(host); err != nil {
		return "", "", fmt.Errorf("address %q: %w", addr, err)
	}
	return host, port, nil
}

var hostRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*\.?$`)

func checkHost(host string) error {
	if net.ParseIP(host) != nil {
		return nil
	}
	if len(host) > 253 || !hostRE.MatchString(host) {
		return fmt.Errorf("%q is not a host name or IP address", host)
	}
	return nil
}

func checkName(name string) error {
	if !nodeNameRE.MatchString(name) {
		return fmt.Errorf("%q is not a valid node name: use 1-64 letters, digits, '-' and '_' (no dots or colons, which addresses have)", name)
	}
	return nil
}

func known(nodes map[string]Node) string {
	if len(nodes) == 0 {
		return "none yet"
	}
	names := make([]string, 0, len(nodes))
	for n := range nodes {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}
