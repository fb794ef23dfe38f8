package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/bookshop/gateway/internal/config"
)

// harness is a gateway under test behind an httptest server, with its logs and spans.
type harness struct {
	t       *testing.T
	gateway *Gateway
	server  *httptest.Server
	logs    *lockedBuffer
	spans   *tracetest.SpanRecorder
	waits   *waits
}

// testPage stands in for the storefront's files, which another hand writes.
var testPage = fstest.MapFS{
	"index.html": {Data: []byte("<!doctype html><title>Bookshop</title><script src=\"/static/app.js\"></script>")},
	"app.js":     {Data: []byte("console.log('bookshop');")},
	"style.css":  {Data: []byte("body { margin: 0 }")},
	"web.go":     {Data: []byte("package web")},
}

// deadAddress is a loopback address nothing listens on: calls to it are refused. The default
// base URLs (ports 8001-8003) are never used by a test, since something else may listen there.
func deadAddress(t *testing.T) string {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	address := "http://" + listener.Addr().String()
	_ = listener.Close()
	return address
}

// start runs a gateway configured by env on top of test defaults: every upstream refused
// unless env names one, no exporter, DEBUG logs, waits between retries recorded, not taken.
func start(t *testing.T, env ...string) *harness {
	t.Helper()
	dead := deadAddress(t)
	environ := []string{
		"OTEL_TRACES_EXPORTER=none", "LOGGING__LEVEL=DEBUG", "SHUTDOWN__DRAIN_SECONDS=0",
		"DEPENDENCIES__BOOKS__BASE_URL=" + dead, "DEPENDENCIES__SHOP__BASE_URL=" + dead,
		"DEPENDENCIES__CHAT__BASE_URL=" + dead,
	}
	environ = append(environ, env...)
	settings, err := config.Load(environ)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, logs: &lockedBuffer{}, spans: tracetest.NewSpanRecorder(), waits: &waits{}}
	h.gateway, err = New(context.Background(), settings, Options{
		LogOutput:      h.logs,
		Getenv:         lookup(environ),
		Web:            testPage,
		SpanProcessors: []sdktrace.SpanProcessor{h.spans},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, up := range h.gateway.Upstreams {
		up.SetSleep(h.waits.sleep)
	}
	h.server = httptest.NewServer(h.gateway.Handler())
	t.Cleanup(func() {
		h.gateway.StopStreams()
		h.server.Close()
		_ = h.gateway.Close(context.Background())
	})
	return h
}

func lookup(environ []string) func(string) string {
	return func(name string) string {
		for _, entry := range environ {
			if key, value, ok := strings.Cut(entry, "="); ok && key == name {
				return value
			}
		}
		return ""
	}
}

// do sends one request to the gateway and reads the whole answer.
func (h *harness) do(method, path string, body io.Reader, header http.Header) (*http.Response, []byte) {
	h.t.Helper()
	request, err := http.NewRequest(method, h.server.URL+path, body)
	if err != nil {
		h.t.Fatal(err)
	}
	for name, values := range header {
		request.Header[name] = values
	}
	response, err := h.server.Client().Do(request)
	if err != nil {
		h.t.Fatal(err)
	}
	defer response.Body.Close()
	data, err := io.ReadAll(response.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return response, data
}

func (h *harness) get(path string) (*http.Response, []byte) {
	h.t.Helper()
	return h.do(http.MethodGet, path, nil, nil)
}

// readiness is GET /health/ready decoded.
func (h *harness) readiness() (int, map[string]any) {
	h.t.Helper()
	response, body := h.get(ReadyPath)
	var decoded map[string]any
	if err := json.Unmarshal(body, &decoded); err != nil {
		h.t.Fatalf("readiness body %q: %v", body, err)
	}
	return response.StatusCode, decoded
}

// logLines are the JSON lines written so far.
func (h *harness) logLines() []map[string]any {
	h.t.Helper()
	var lines []map[string]any
	for _, raw := range strings.Split(strings.TrimSpace(h.logs.String()), "\n") {
		if raw == "" {
			continue
		}
		var line map[string]any
		if err := json.Unmarshal([]byte(raw), &line); err != nil {
			h.t.Fatalf("log line is not JSON: %q", raw)
		}
		lines = append(lines, line)
	}
	return lines
}

// decodeProblem checks a problem+json answer and returns its members.
func decodeProblem(t *testing.T, response *http.Response, body []byte, status int) map[string]any {
	t.Helper()
	if response.StatusCode != status {
		t.Fatalf("status %d, want %d: %s", response.StatusCode, status, body)
	}
	if got := response.Header.Get("Content-Type"); got != "application/problem+json" {
		t.Fatalf("content type %q: %s", got, body)
	}
	var members map[string]any
	if err := json.Unmarshal(body, &members); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"type", "title", "status", "detail", "trace_id"} {
		if _, ok := members[name]; !ok {
			t.Fatalf("problem without %s: %s", name, body)
		}
	}
	if members["status"] != float64(status) || members["trace_id"] != response.Header.Get(TraceHeader) {
		t.Fatalf("problem %s vs header trace %q", body, response.Header.Get(TraceHeader))
	}
	return members
}

// lockedBuffer is a log output several goroutines write to.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waits records the waits between retries instead of taking them.
type waits struct {
	mu    sync.Mutex
	taken []time.Duration
}

func (w *waits) sleep(_ context.Context, d time.Duration) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.taken = append(w.taken, d)
	return nil
}

func (w *waits) all() []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]time.Duration(nil), w.taken...)
}

// counter is an upstream handler's call count.
type counter struct {
	mu sync.Mutex
	n  int
}

func (c *counter) next() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	return c.n
}

func (c *counter) get() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// upstreamServer is a test upstream; it is closed when the test ends.
func upstreamServer(t *testing.T, handler http.HandlerFunc) *httptest.Server {
	t.Helper()
	server := httptest.NewServer(handler)
	t.Cleanup(server.Close)
	return server
}
