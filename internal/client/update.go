package client

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/nodeboot/nodeboot/internal/contract"
)

// UpdateOffset is POST /v1/update/offset: how many body bytes of the
// payload whose header is header the node already holds, verified.
func (c *Client) UpdateOffset(ctx context.Context, header []byte) (*contract.UpdateOffset, error) {
	resp, err := c.do(ctx, http.MethodPost, contract.PathUpdateOffset, bytes.NewReader(header), int64(len(header)),
		map[string]string{"Content-Type": contract.UpdateMediaType})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var o contract.UpdateOffset
	if err := decodeJSON(resp.Body, &o); err != nil {
		return nil, fmt.Errorf("the update offset answer of %s: %w", c.address, err)
	}
	return &o, nil
}

// Update is PUT /v1/update: it streams a payload (its header, then its
// body from body offset from) of size bytes. The node answers 202 once the
// slot is armed, then reboots into the trial. The bytes sent are also
// written to progress when it is not nil.
func (c *Client) Update(ctx context.Context, payload io.Reader, size, from int64, allowDowngrade bool, progress io.Writer) (*contract.UpdateAccepted, error) {
	q := url.Values{}
	if from > 0 {
		q.Set(contract.UpdateFromParam, strconv.FormatInt(from, 10))
	}
	if allowDowngrade {
		q.Set(contract.UpdateDowngradeParam, "1")
	}
	p := contract.PathUpdate
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	body := payload
	if progress != nil {
		body = io.TeeReader(payload, progress)
	}
	resp, err := c.do(ctx, http.MethodPut, p, body, size, map[string]string{"Content-Type": contract.UpdateMediaType})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var a contract.UpdateAccepted
	if err := decodeJSON(resp.Body, &a); err != nil {
		return nil, fmt.Errorf("the update answer of %s: %w", c.address, err)
	}
	return &a, nil
}
