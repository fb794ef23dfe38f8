// Package upstream calls one service behind the gateway with the design §7 resilience, as
// libs/common/src/chassis/client.py does for the Python services:
//
//	Upstream.Do          the call's deadline, the breaker, retries with backoff
//	    attempt          one client span and one client-duration sample per try,
//	                     W3C trace context and baggage injected, connect/read timeouts
//
// Answers are returned as they are, whatever their status (a 404 from books is an answer to
// pass on); only calls that produced no answer to pass on return an *Error.
package upstream

import (
	"context"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/bookshop/gateway/internal/breaker"
	"github.com/bookshop/gateway/internal/config"
	"github.com/bookshop/gateway/internal/health"
	"github.com/bookshop/gateway/internal/logging"
	"github.com/bookshop/gateway/internal/metrics"
)

// Upstream is one service the gateway fronts. Safe for concurrent use.
type Upstream struct {
	Name     string
	base     *url.URL
	settings config.Dependency
	breaker  *breaker.Breaker // nil when dependencies.<name>.breaker.enabled is false
	client   *http.Transport
	metrics  *metrics.Metrics
	tracer   trace.Tracer
	log      *slog.Logger
	// sleep waits between attempts; tests replace it to see the waits without taking them.
	sleep func(ctx context.Context, d time.Duration) error
}

// New makes the upstream name at settings.BaseURL (already validated by config).
func New(name string, settings config.Dependency, m *metrics.Metrics, tracer trace.Tracer,
	log *slog.Logger) (*Upstream, error) {
	base, err := url.Parse(strings.TrimRight(settings.BaseURL, "/"))
	if err != nil {
		return nil, err
	}
	u := &Upstream{
		Name:     name,
		base:     base,
		settings: settings,
		client:   newTransport(settings.Connect),
		metrics:  m,
		tracer:   tracer,
		log:      logging.Named(log, logging.ClientLogger),
		sleep:    sleepContext,
	}
	if settings.Breaker.Enabled {
		policy := settings.Breaker.Policy(settings.Read)
		if err := policy.Validate(); err != nil {
			return nil, err
		}
		u.breaker = breaker.New(name, policy, nil, breaker.Listeners{
			StateChanged: u.stateChanged,
			Outcome:      u.countOutcome,
		})
	}
	u.showState(breaker.Closed)
	return u, nil
}

// Breaker is the upstream's circuit breaker, nil when disabled.
func (u *Upstream) Breaker() *breaker.Breaker { return u.breaker }

// SetSleep replaces the wait between attempts (tests).
func (u *Upstream) SetSleep(sleep func(ctx context.Context, d time.Duration) error) {
	u.sleep = sleep
}

// Close drops idle connections.
func (u *Upstream) Close() { u.client.CloseIdleConnections() }

func (u *Upstream) stateChanged(previous, current breaker.State) {
	u.showState(current)
	level := slog.LevelWarn
	if current == breaker.Closed {
		level = slog.LevelInfo
	}
	u.log.Log(context.Background(), level, "circuit breaker state changed",
		"peer_service", u.Name, "previous_state", string(previous), "state", string(current))
}

// showState sets the state gauge: 1 for the current state, 0 for the others.
func (u *Upstream) showState(current breaker.State) {
	for _, state := range breaker.States {
		value := 0.0
		if state == current {
			value = 1
		}
		u.metrics.BreakerState.WithLabelValues(u.Name, string(state)).Set(value)
	}
}

func (u *Upstream) countOutcome(outcome breaker.Outcome) {
	u.metrics.BreakerCalls.WithLabelValues(u.Name, string(outcome)).Inc()
}

// Check is the upstream's readiness check: its health as its breaker sees it, never a probe
// of the upstream itself (chassis.client.DependencyCheck).
func (u *Upstream) Check() health.Check {
	return health.Check{Name: u.Name, Critical: u.settings.Critical, Run: func() health.Result {
		if u.breaker == nil {
			return health.Result{Status: health.Up, Details: map[string]any{"breaker": "disabled"}}
		}
		state := u.breaker.State()
		details := map[string]any{"breaker": string(state)}
		status := health.Up
		switch state {
		case breaker.HalfOpen:
			status = health.Degraded
		case breaker.Open:
			status = health.Down
			details["retry_after_seconds"] = math.Round(u.breaker.RetryAfter().Seconds()*10) / 10
		}
		return health.Result{Status: status, Details: details}
	}}
}

func sleepContext(ctx context.Context, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
