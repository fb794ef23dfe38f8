package proxy

import (
	"net"
	"net/http"
	"strings"
)

// Hop-by-hop headers (RFC 9110 §7.6.1): they describe one connection, never the next one.
var hopByHop = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// What a client claims about earlier hops: the gateway is the edge, so it sets these itself
// rather than pass on a claim anyone could make.
var forwardingClaims = []string{
	"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto",
	"X-Forwarded-Prefix", "X-Real-Ip",
}

// Trace context travels as the gateway's client span, injected per attempt; the client's own
// headers for it are replaced, never copied (baggage is carried over through the span's
// context, which the server middleware extracted it into).
var traceContext = []string{"Traceparent", "Tracestate", "Baggage"}

// outgoingHeader is what the upstream is sent: the client's end-to-end headers (Authorization,
// Idempotency-Key, Last-Event-ID, Content-Type, Accept, ...) and the X-Forwarded-* of this hop.
func outgoingHeader(r *http.Request, prefix string) http.Header {
	header := r.Header.Clone()
	removeHopByHop(header)
	for _, name := range append(forwardingClaims, traceContext...) {
		header.Del(name)
	}
	if client, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		header.Set("X-Forwarded-For", client)
	}
	header.Set("X-Forwarded-Host", r.Host)
	proto := "http"
	if r.TLS != nil {
		proto = "https"
	}
	header.Set("X-Forwarded-Proto", proto)
	header.Set("X-Forwarded-Prefix", prefix)
	return header
}

// copyResponseHeader passes the upstream's end-to-end headers on. Content-Length is the
// gateway's to set, and X-Trace-Id names the gateway's trace (the same trace: the upstream's
// spans are children of the gateway's).
func copyResponseHeader(dst, src http.Header) {
	skip := connectionHeaders(src)
	for name, values := range src {
		canonical := http.CanonicalHeaderKey(name)
		if skip[canonical] || canonical == "Content-Length" || canonical == "X-Trace-Id" {
			continue
		}
		dst[canonical] = append([]string(nil), values...)
	}
}

func removeHopByHop(header http.Header) {
	for name := range connectionHeaders(header) {
		header.Del(name)
	}
}

// connectionHeaders are the hop-by-hop headers and any the Connection header names.
func connectionHeaders(header http.Header) map[string]bool {
	names := make(map[string]bool, len(hopByHop))
	for _, name := range hopByHop {
		names[name] = true
	}
	for _, value := range header.Values("Connection") {
		for _, name := range strings.Split(value, ",") {
			if name = strings.TrimSpace(name); name != "" {
				names[http.CanonicalHeaderKey(name)] = true
			}
		}
	}
	return names
}
