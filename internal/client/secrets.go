package client

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/nodeboot/nodeboot/internal/contract"
)

func secretPath(app, name string) string {
	return contract.AppPath(app) + "/secrets/" + url.PathEscape(name)
}

// SetSecret is PUT /v1/apps/{app}/secrets/{name}.
func (c *Client) SetSecret(ctx context.Context, app, name string, value []byte) (*contract.SecretResult, error) {
	p := secretPath(app, name)
	resp, err := c.do(ctx, http.MethodPut, p, bytes.NewReader(value), int64(len(value)), map[string]string{"Content-Type": "application/octet-stream"})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r contract.SecretResult
	if err := decodeJSON(resp.Body, &r); err != nil {
		return nil, fmt.Errorf("PUT %s on %s: %w", p, c.address, err)
	}
	return &r, nil
}

// Secrets is GET /v1/apps/{app}/secrets: the names, never the values.
func (c *Client) Secrets(ctx context.Context, app string) (*contract.SecretList, error) {
	var r contract.SecretList
	if err := c.doJSON(ctx, http.MethodGet, contract.AppPath(app)+"/secrets", &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// RemoveSecret is DELETE /v1/apps/{app}/secrets/{name}.
func (c *Client) RemoveSecret(ctx context.Context, app, name string) (*contract.SecretResult, error) {
	var r contract.SecretResult
	if err := c.doJSON(ctx, http.MethodDelete, secretPath(app, name), &r); err != nil {
		return nil, err
	}
	return &r, nil
}
