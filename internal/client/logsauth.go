package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/nodeboot/nodeboot/internal/contract"
)

// SetLogsClientCert is PUT /v1/logs/auth: the node checks the pair, keeps
// it on /data and reconnects to its remote log endpoint with it.
func (c *Client) SetLogsClientCert(ctx context.Context, lc contract.LogsClientCredentials) (*contract.LogsAuthResult, error) {
	b, err := json.Marshal(lc)
	if err != nil {
		return nil, err
	}
	resp, err := c.do(ctx, http.MethodPut, contract.PathLogsAuth, bytes.NewReader(b), int64(len(b)), map[string]string{"Content-Type": "application/json"})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r contract.LogsAuthResult
	if err := decodeJSON(resp.Body, &r); err != nil {
		return nil, fmt.Errorf("PUT %s on %s: %w", contract.PathLogsAuth, c.address, err)
	}
	return &r, nil
}

// RemoveLogsClientCert is DELETE /v1/logs/auth.
func (c *Client) RemoveLogsClientCert(ctx context.Context) (*contract.LogsAuthResult, error) {
	var r contract.LogsAuthResult
	if err := c.doJSON(ctx, http.MethodDelete, contract.PathLogsAuth, &r); err != nil {
		return nil, err
	}
	return &r, nil
}
