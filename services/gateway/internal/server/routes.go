package server

import (
	"net/http"

	"github.com/bookshop/gateway/internal/metrics"
	"github.com/bookshop/gateway/internal/problem"
	"github.com/bookshop/gateway/internal/proxy"
)

// The chassis endpoints (design §4) and the storefront's.
const (
	LivePath        = "/health/live"
	ReadyPath       = "/health/ready"
	HealthcheckPath = "/healthcheck"
	MetricsPath     = "/metrics"
	InfoPath        = "/info"
	ConfigPath      = "/config.json"
)

// ProbeRoutes are requested by machines every few seconds: their access-log line is DEBUG, so
// they never drown the INFO log (a failing one, 5xx, is news and stays INFO).
var ProbeRoutes = map[string]bool{LivePath: true, ReadyPath: true, HealthcheckPath: true, MetricsPath: true}

// EventStream is an upstream route answering Server-Sent Events: passed through unbuffered,
// with no read timeout.
type EventStream struct {
	Upstream string
	Path     string // the upstream's route template
}

// EventStreams are the proxied event streams: chat's room followers (design §3).
var EventStreams = []EventStream{{Upstream: "chat", Path: "/rooms/{room}/events"}}

// routes maps ServeMux patterns to the route templates that label telemetry: the proxied
// routes are /api/<upstream>/{path}, whatever the path, so no raw path becomes a label.
type routes struct {
	mux       *http.ServeMux
	templates map[string]string
}

func (rt *routes) handle(pattern, template string, handler http.Handler) {
	rt.mux.Handle(pattern, handler)
	rt.templates[pattern] = template
}

// match is the route template of r, or NOT_FOUND.
func (rt *routes) match(r *http.Request) string {
	_, pattern := rt.mux.Handler(r)
	if template, ok := rt.templates[pattern]; ok {
		return template
	}
	return metrics.UnmatchedRoute
}

func (g *Gateway) routes() *routes {
	rt := &routes{mux: http.NewServeMux(), templates: map[string]string{}}
	endpoints := &endpoints{g: g, metrics: g.Metrics.Handler()}
	rt.handle(LivePath, LivePath, onlyGet(endpoints.live))
	rt.handle(ReadyPath, ReadyPath, onlyGet(endpoints.ready))
	rt.handle(HealthcheckPath, HealthcheckPath, onlyGet(endpoints.ready))
	rt.handle(MetricsPath, MetricsPath, onlyGet(endpoints.serveMetrics))
	rt.handle(InfoPath, InfoPath, onlyGet(endpoints.info))
	rt.handle(ConfigPath, ConfigPath, onlyGet(endpoints.config))
	rt.handle("/{$}", "/", onlyGet(g.storefront.index))
	rt.handle("/static/{file...}", "/static/{file}", onlyGet(g.storefront.static))

	forward := &proxy.Proxy{
		MaxBody:     g.Settings.HTTP.MaxBodyBytes,
		BodyTimeout: g.Settings.HTTP.BodyTimeout,
		Streams:     g.streams,
	}
	for _, name := range upstreamNames(g.Settings) {
		up := g.Upstreams[name]
		prefix := proxy.Prefix + name
		handler := forward.Handler(up, false, "")
		rt.handle(prefix, prefix+"/{path}", handler)
		rt.handle(prefix+"/{path...}", prefix+"/{path}", handler)
	}
	for _, stream := range EventStreams {
		if up, ok := g.Upstreams[stream.Upstream]; ok {
			template := proxy.Prefix + stream.Upstream + stream.Path
			rt.handle("GET "+template, template, forward.Handler(up, true, stream.Path))
		}
	}
	rt.handle("/", metrics.UnmatchedRoute, http.HandlerFunc(notFound))
	return rt
}

// Handler is the gateway's whole HTTP stack.
func (g *Gateway) Handler() http.Handler {
	rt := g.routes()
	return g.telemetry(rt, securityHeaders(rt.mux))
}

func notFound(w http.ResponseWriter, r *http.Request) {
	problem.Write(w, r, problem.Problem{Status: http.StatusNotFound,
		Detail: "no route for " + r.Method + " " + r.URL.Path})
}

// onlyGet answers GET and HEAD, and a 405 problem with Allow to any other method.
func onlyGet(handler http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			problem.Write(w, r, problem.Problem{Status: http.StatusMethodNotAllowed,
				Detail: r.Method + " is not allowed here"})
			return
		}
		handler(w, r)
	})
}
