package client

import (
	"context"
	"net/http"

	"github.com/nodeboot/nodeboot/internal/contract"
)

// SetPullCredentials is PUT /v1/follow/auth: the node tries c against the
// registry it follows and keeps them unless the registry refuses them.
func (c *Client) SetPullCredentials(ctx context.Context, rc contract.RegistryCredentials) (*contract.FollowAuthResult, error) {
	var r contract.FollowAuthResult
	if err := c.putJSON(ctx, contract.PathFollowAuth, rc, &r); err != nil {
		return nil, err
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
