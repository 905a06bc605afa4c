package stack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Probe says whether something is ready: nil when it is.
type Probe func(ctx context.Context) error

// Poll calls probe every 200 ms until it returns nil, ctx ends or limit
// passes; the error then carries the probe's last answer.
func Poll(ctx context.Context, limit time.Duration, probe Probe) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		err := probe(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready within %s: %w", limit, errors.Join(err, context.Cause(ctx)))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// TCPReady is a probe that succeeds once addr (loopback only) accepts a
// TCP connection.
func TCPReady(addr string) Probe {
	return func(ctx context.Context) error {
		if err := CheckAddr(addr); err != nil {
			return err
		}
		d := net.Dialer{Timeout: time.Second}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	}
}

var probeClient = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// HTTPReady is a probe that succeeds once a GET of url (loopback only)
// answers 200.
func HTTPReady(url string) Probe {
	return func(ctx context.Context) error {
		if err := CheckURL(url); err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := probeClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	}
}

// PortFree fails if something accepts connections on addr.
func PortFree(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
	if err != nil {
		return nil
	}
	c.Close()
	return fmt.Errorf("%s is in use by another process", addr)
}

// FreeAddr returns a 127.0.0.1 address whose port was free a moment ago.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
