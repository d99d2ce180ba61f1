package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/nodeboot/nodeboot/internal/contract"
)

// SetPullCredentials is PUT /v1/follow/auth: the node tries c against the
// registry it follows and keeps them unless the registry refuses them.
func (c *Client) SetPullCredentials(ctx context.Context, rc contract.RegistryCredentials) (*contract.FollowAuthResult, error) {
	b, err := json.Marshal(rc)
	if err != nil {
		return nil, err
	}
	resp, err := c.do(ctx, http.MethodPut, contract.PathFollowAuth, bytes.NewReader(b), int64(len(b)), map[string]string{"Content-Type": "application/json"})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r contract.FollowAuthResult
	if err := decodeJSON(resp.Body, &r); err != nil {
		return nil, fmt.Errorf("PUT %s on %s: %w", contract.PathFollowAuth, c.address, err)
	}
	return &r, nil
}

// RemovePullCredentials is DELETE /v1/follow/auth.
func (c *Client) RemovePullCredentials(ctx context.Context) (*contract.FollowAuthResult, error) {
	var r contract.FollowAuthResult
	if err := c.doJSON(ctx, http.MethodDelete, contract.PathFollowAuth, &r); err != nil {
		return nil, err
	}
	return &r, nil
}
