// Package metrics defines the design §5 Prometheus metrics, each name and label once, as
// libs/common/src/chassis/metrics.py does for the Python services. Dashboards and alert rules
// query these names: change one only together with them.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// DurationBuckets are the bounds (seconds) of both duration histograms.
var DurationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}

// Metric names.
const (
	ServerDuration = "http_server_request_duration_seconds"
	ServerActive   = "http_server_active_requests"
	ClientDuration = "http_client_request_duration_seconds"
	ClientRetries  = "http_client_retries_total"
	BreakerState   = "circuit_breaker_state"
	BreakerCalls   = "circuit_breaker_calls_total"
	ServiceInfo    = "service_info"
)

// Label names.
const (
	Method    = "http_request_method"
	Route     = "http_route"
	Status    = "http_response_status_code"
	Peer      = "peer_service"
	ErrorType = "error_type"
	State     = "state"
	Outcome   = "outcome"
)

// UnmatchedRoute labels a request no route template matched.
const UnmatchedRoute = "NOT_FOUND"

// ExemplarLabel names the trace of an exemplar.
const ExemplarLabel = "trace_id"

// Metrics are one gateway's, in their own registry so that tests never share state.
type Metrics struct {
	Registry       *prometheus.Registry
	ServerDuration *prometheus.HistogramVec
	ServerActive   *prometheus.GaugeVec
	ClientDuration *prometheus.HistogramVec
	ClientRetries  *prometheus.CounterVec
	BreakerState   *prometheus.GaugeVec
	BreakerCalls   *prometheus.CounterVec
	ServiceInfo    *prometheus.GaugeVec
}

// New registers the design §5 metrics and the process and Go runtime collectors (the Python
// services export their process and platform collectors the same way).
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		ServerDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: ServerDuration, Help: "Duration of HTTP server requests.", Buckets: DurationBuckets,
		}, []string{Method, Route, Status}),
		ServerActive: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: ServerActive, Help: "HTTP requests in flight.",
		}, []string{Method}),
		// Both status and error_type, one of them empty, as the chassis labels it: one series
		// set, whether or not the upstream answered.
		ClientDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: ClientDuration, Help: "Duration of outgoing HTTP requests.", Buckets: DurationBuckets,
		}, []string{Peer, Method, Status, ErrorType}),
		ClientRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: ClientRetries, Help: "Retried outgoing HTTP requests.",
		}, []string{Peer}),
		BreakerState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: BreakerState, Help: "Circuit breaker state (1 = current).",
		}, []string{Peer, State}),
		BreakerCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: BreakerCalls, Help: "Calls through a circuit breaker by outcome.",
		}, []string{Peer, Outcome}),
		ServiceInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: ServiceInfo, Help: "Service identity.",
		}, []string{"service", "version", "commit"}),
	}
	m.Registry.MustRegister(
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewGoCollector(),
		m.ServerDuration, m.ServerActive, m.ClientDuration, m.ClientRetries,
		m.BreakerState, m.BreakerCalls, m.ServiceInfo,
	)
	return m
}

// Handler serves the exposition: the text format by default, OpenMetrics (which carries the
// exemplars) when the scraper's Accept asks for it.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{EnableOpenMetrics: true})
}

// Observe records value on observer, with the trace as exemplar when traceID is not empty.
func Observe(observer prometheus.Observer, value float64, traceID string) {
	if exemplars, ok := observer.(prometheus.ExemplarObserver); ok && traceID != "" {
		exemplars.ObserveWithExemplar(value, prometheus.Labels{ExemplarLabel: traceID})
		return
	}
	observer.Observe(value)
}

// Methods kept as label values; any other collapses to _OTHER (OpenTelemetry semantic
// conventions), so a client cannot mint label values.
var knownMethods = map[string]bool{
	"GET": true, "HEAD": true, "POST": true, "PUT": true, "DELETE": true, "CONNECT": true,
	"OPTIONS": true, "TRACE": true, "PATCH": true,
}

// NormaliseMethod is method as a label value.
func NormaliseMethod(method string) string {
	if knownMethods[method] {
		return method
	}
	return "_OTHER"
}
