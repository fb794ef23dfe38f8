package upstream

import (
	"context"
	"net"
	"net/http"
	"time"
)

// newTransport is the connection pool of one upstream.
func newTransport(connectTimeout time.Duration) *http.Transport {
	dialer := &net.Dialer{Timeout: connectTimeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		// Service-to-service calls go straight to the upstream, never through HTTP_PROXY.
		Proxy: nil,
		DialContext: func(ctx context.Context, network, address string) (net.Conn, error) {
			conn, err := dialer.DialContext(ctx, network, address)
			if err != nil {
				return nil, &dialError{err: err}
			}
			return conn, nil
		},
		// Every event-stream follower holds a connection of its own; the rest reuse few.
		MaxIdleConns:        512,
		MaxIdleConnsPerHost: 256,
		// Shorter than uvicorn's 5 s keep-alive, so a connection the upstream is about to close
		// is never picked for a request.
		IdleConnTimeout: 4 * time.Second,
		// The caller's Accept-Encoding and the upstream's Content-Encoding pass through as they
		// are; a transparently gunzipped body would also be buffered, which an event stream
		// cannot afford.
		DisableCompression: true,
		// Timeouts are the attempt's watchdog's (read, deadline) and the dialer's (connect).
		ResponseHeaderTimeout: 0,
	}
}
