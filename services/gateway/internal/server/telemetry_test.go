package server

import (
	"net/http"
	"regexp"
	"testing"

	"go.opentelemetry.io/otel/trace"
)

var rfc3339UTC = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$`)

// accessLines are the access-log lines, by path.
func (h *harness) accessLines() map[string]map[string]any {
	lines := map[string]map[string]any{}
	for _, line := range h.logLines() {
		if line["logger"] == "chassis.access" {
			lines[line["path"].(string)] = line
		}
	}
	return lines
}

func TestOneAccessLinePerRequestWithTheDesignFields(t *testing.T) {
	books := upstreamServer(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(201) })
	h := start(t, "DEPENDENCIES__BOOKS__BASE_URL="+books.URL)
	response, _ := h.do(http.MethodPost, "/api/books/books", nil, http.Header{"Authorization": {"Bearer sekrit"}})
	line := h.accessLines()["/api/books/books"]
	if line == nil {
		t.Fatalf("no access line; logs:\n%s", h.logs.String())
	}
	want := map[string]any{"level": "info", "logger": "chassis.access", "message": "request",
		"service": "gateway", "method": "POST", "route": "/api/books/{path}", "status": 201.0,
		"trace_id": response.Header.Get(TraceHeader)}
	for key, value := range want {
		if line[key] != value {
			t.Errorf("%s = %#v, want %#v", key, line[key], value)
		}
	}
	if _, ok := line["duration_ms"].(float64); !ok {
		t.Errorf("duration_ms %#v", line["duration_ms"])
	}
	if span, ok := line["span_id"].(string); !ok || len(span) != 16 {
		t.Errorf("span_id %#v", line["span_id"])
	}
	if !rfc3339UTC.MatchString(line["timestamp"].(string)) {
		t.Errorf("timestamp %v", line["timestamp"])
	}
	if regexp.MustCompile(`sekrit`).MatchString(h.logs.String()) {
		t.Error("a bearer token reached the log")
	}
}

func TestProbesAndScrapesLogAtDebugUnlessTheyFail(t *testing.T) {
	h := start(t)
	for _, path := range []string{LivePath, ReadyPath, HealthcheckPath, MetricsPath, InfoPath} {
		h.get(path)
	}
	lines := h.accessLines()
	for _, path := range []string{LivePath, ReadyPath, HealthcheckPath, MetricsPath} {
		if lines[path]["level"] != "debug" {
			t.Errorf("%s logged at %v, want debug", path, lines[path]["level"])
		}
	}
	if lines[InfoPath]["level"] != "info" {
		t.Errorf("/info logged at %v, want info (nothing polls it)", lines[InfoPath]["level"])
	}
	h.gateway.Shutdown.Begin()
	h.get(ReadyPath)
	if lines := h.accessLines(); lines[ReadyPath]["level"] != "info" || lines[ReadyPath]["status"] != 503.0 {
		t.Errorf("a failing readiness probe: %v", lines[ReadyPath])
	}
}

func TestServerSpansAreNamedByRouteTemplate(t *testing.T) {
	h := start(t)
	h.get("/api/shop/orders/17")
	h.get("/static/app.js")
	h.get("/definitely/not/here")
	names := map[string]bool{}
	for _, span := range h.spans.Ended() {
		if span.SpanKind() == trace.SpanKindServer {
			names[span.Name()] = true
		}
	}
	for _, want := range []string{"GET /api/shop/{path}", "GET /static/{file}", "GET NOT_FOUND"} {
		if !names[want] {
			t.Errorf("no server span %q in %v", want, names)
		}
	}
}
