package server

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// endpoints answer design §4's chassis paths and the storefront's configuration.
type endpoints struct {
	g       *Gateway
	metrics http.Handler
}

func (e *endpoints) live(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, r, http.StatusOK, map[string]string{"status": "UP"})
}

func (e *endpoints) ready(w http.ResponseWriter, r *http.Request) {
	readiness := e.g.Health.Readiness()
	writeJSON(w, r, readiness.HTTPStatus(), readiness)
}

func (e *endpoints) serveMetrics(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	e.metrics.ServeHTTP(w, r)
}

func (e *endpoints) info(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, r, http.StatusOK, e.g.Info)
}

// config tells the storefront page what it cannot know itself.
func (e *endpoints) config(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, r, http.StatusOK, map[string]string{"jaeger_url": e.g.Settings.Storefront.JaegerURL})
}

func writeJSON(w http.ResponseWriter, r *http.Request, status int, value any) {
	body, err := json.Marshal(value)
	if err != nil {
		panic(err) // values here are the gateway's own, always encodable
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}
