package client

import (
	"context"
	"net/http"

	"github.com/nodeboot/nodeboot/internal/contract"
)

// SetLogsClientCert is PUT /v1/logs/auth: the node checks the pair, keeps
// it on /data and reconnects to its remote log endpoint with it.
func (c *Client) SetLogsClientCert(ctx context.Context, lc contract.LogsClientCredentials) (*contract.LogsAuthResult, error) {
	var r contract.LogsAuthResult
	if err := c.putJSON(ctx, contract.PathLogsAuth, lc, &r); err != nil {
		return nil, err
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
