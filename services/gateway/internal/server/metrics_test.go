package server

import (
	"bytes"
	"math"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The design §5 table, written out rather than taken from the metrics package: this is the
// contract the package must keep.
var designMetrics = map[string]struct {
	kind   dto.MetricType
	labels []string
}{
	"http_server_request_duration_seconds": {dto.MetricType_HISTOGRAM, []string{"http_request_method", "http_response_status_code", "http_route"}},
	"http_server_active_requests":          {dto.MetricType_GAUGE, []string{"http_request_method"}},
	"http_client_request_duration_seconds": {dto.MetricType_HISTOGRAM, []string{"error_type", "http_request_method", "http_response_status_code", "peer_service"}},
	"http_client_retries_total":            {dto.MetricType_COUNTER, []string{"peer_service"}},
	"circuit_breaker_state":                {dto.MetricType_GAUGE, []string{"peer_service", "state"}},
	"circuit_breaker_calls_total":          {dto.MetricType_COUNTER, []string{"outcome", "peer_service"}},
	"service_info":                         {dto.MetricType_GAUGE, []string{"commit", "service", "version"}},
}

var designBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}

// traffic makes every metric appear: answers, a retry, a breaker rejection, a 404. The first
// call takes two attempts (503, retried, then 500), the next eight one each: the 10th failure
// of 10 opens books' breaker, and the last two calls are rejected.
func traffic(t *testing.T) *harness {
	t.Helper()
	calls := &counter{}
	books := scripted(t, calls, func(call int) int {
		if call == 1 {
			return http.StatusServiceUnavailable
		}
		return http.StatusInternalServerError
	})
	h := start(t, "DEPENDENCIES__BOOKS__BASE_URL="+books)
	for i := range 11 {
		h.get("/api/books/books/" + string(rune('a'+i)) + "?q=1")
	}
	h.get("/no/such/route/42")
	h.get(LivePath)
	return h
}

func scrape(t *testing.T, h *harness) map[string]*dto.MetricFamily {
	t.Helper()
	response, body := h.get(MetricsPath)
	if !strings.HasPrefix(response.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("default exposition %q", response.Header.Get("Content-Type"))
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return families
}

func labelNames(metric *dto.Metric) []string {
	var names []string
	for _, pair := range metric.GetLabel() {
		names = append(names, pair.GetName())
	}
	sort.Strings(names)
	return names
}

func labelValue(metric *dto.Metric, name string) string {
	for _, pair := range metric.GetLabel() {
		if pair.GetName() == name {
			return pair.GetValue()
		}
	}
	return ""
}

func TestMetricNamesLabelsAndBucketsAreDesignSection5s(t *testing.T) {
	families := scrape(t, traffic(t))
	for name, want := range designMetrics {
		family, ok := families[name]
		if !ok {
			t.Errorf("%s missing", name)
			continue
		}
		if family.GetType() != want.kind {
			t.Errorf("%s is a %s, want %s", name, family.GetType(), want.kind)
		}
		for _, metric := range family.GetMetric() {
			if got := labelNames(metric); strings.Join(got, ",") != strings.Join(want.labels, ",") {
				t.Errorf("%s labels %v, want %v", name, got, want.labels)
			}
			if histogram := metric.GetHistogram(); histogram != nil {
				var bounds []float64
				for _, bucket := range histogram.GetBucket() {
					if !math.IsInf(bucket.GetUpperBound(), 1) { // implicit in the design's list
						bounds = append(bounds, bucket.GetUpperBound())
					}
				}
				if len(bounds) != len(designBuckets) {
					t.Fatalf("%s buckets %v, want %v", name, bounds, designBuckets)
				}
				for i := range bounds {
					if bounds[i] != designBuckets[i] {
						t.Fatalf("%s buckets %v, want %v", name, bounds, designBuckets)
					}
				}
			}
		}
	}
	for name := range families {
		if strings.HasPrefix(name, "http_") || strings.HasPrefix(name, "circuit_") || strings.HasPrefix(name, "service_") {
			if _, ok := designMetrics[name]; !ok {
				t.Errorf("%s is not a design §5 metric", name)
			}
		}
	}
}

func TestRoutesAreTemplatesNeverRawPaths(t *testing.T) {
	families := scrape(t, traffic(t))
	allowed := map[string]bool{"/api/books/{path}": true, "NOT_FOUND": true, LivePath: true, MetricsPath: true}
	routes := map[string]bool{}
	for _, metric := range families["http_server_request_duration_seconds"].GetMetric() {
		route := labelValue(metric, "http_route")
		routes[route] = true
		if !allowed[route] {
			t.Errorf("http_route %q", route)
		}
	}
	if !routes["/api/books/{path}"] || !routes["NOT_FOUND"] {
		t.Fatalf("routes %v", routes)
	}
}

func TestTheMetricsTellWhatHappened(t *testing.T) {
	families := scrape(t, traffic(t))
	value := func(name string, labels map[string]string) float64 {
		for _, metric := range families[name].GetMetric() {
			match := true
			for key, want := range labels {
				match = match && labelValue(metric, key) == want
			}
			if match {
				switch {
				case metric.GetCounter() != nil:
					return metric.GetCounter().GetValue()
				case metric.GetGauge() != nil:
					return metric.GetGauge().GetValue()
				case metric.GetHistogram() != nil:
					return float64(metric.GetHistogram().GetSampleCount())
				}
			}
		}
		return -1
	}
	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"http_client_retries_total", map[string]string{"peer_service": "books"}, 1},
		{"circuit_breaker_calls_total", map[string]string{"peer_service": "books", "outcome": "failure"}, 10},
		{"circuit_breaker_calls_total", map[string]string{"peer_service": "books", "outcome": "rejected"}, 2},
		{"circuit_breaker_state", map[string]string{"peer_service": "books", "state": "open"}, 1},
		{"circuit_breaker_state", map[string]string{"peer_service": "books", "state": "closed"}, 0},
		{"circuit_breaker_state", map[string]string{"peer_service": "chat", "state": "closed"}, 1},
		{"http_client_request_duration_seconds", map[string]string{"peer_service": "books", "http_response_status_code": "503", "error_type": ""}, 1},
		{"http_client_request_duration_seconds", map[string]string{"peer_service": "books", "http_response_status_code": "500"}, 9},
		{"http_server_request_duration_seconds", map[string]string{"http_route": "/api/books/{path}", "http_response_status_code": "503"}, 2},
		{"http_server_request_duration_seconds", map[string]string{"http_route": "NOT_FOUND", "http_response_status_code": "404"}, 1},
		{"http_server_active_requests", map[string]string{"http_request_method": "GET"}, 1}, // the scrape itself
		{"service_info", map[string]string{"service": "gateway", "version": "0.1.0"}, 1},
	}
	for _, c := range checks {
		if got := value(c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

var exemplar = regexp.MustCompile(`^(http_(server|client)_request_duration_seconds)_bucket\{.*\} \d+ # \{trace_id="([0-9a-f]{32})"\}`)

func TestHistogramsCarryTraceIDExemplarsInOpenMetrics(t *testing.T) {
	h := traffic(t)
	response, body := h.do(http.MethodGet, MetricsPath, nil, http.Header{
		"Accept": {"application/openmetrics-text; version=1.0.0; charset=utf-8"},
	})
	if !strings.HasPrefix(response.Header.Get("Content-Type"), "application/openmetrics-text") {
		t.Fatalf("asked for OpenMetrics, got %q", response.Header.Get("Content-Type"))
	}
	traces := map[string]bool{}
	for _, span := range h.spans.Ended() {
		traces[span.SpanContext().TraceID().String()] = true
	}
	found := map[string]bool{}
	for _, line := range strings.Split(string(body), "\n") {
		if match := exemplar.FindStringSubmatch(line); match != nil {
			if !traces[match[3]] {
				t.Errorf("exemplar names trace %s, which no span has", match[3])
			}
			found[match[1]] = true
		}
	}
	if !found["http_server_request_duration_seconds"] || !found["http_client_request_duration_seconds"] {
		t.Fatalf("exemplars on %v; body:\n%s", found, body)
	}
	_, plain := h.get(MetricsPath)
	if strings.Contains(string(plain), "trace_id=") {
		t.Fatal("the text format carries exemplars")
	}
}
