// Package health answers readiness as libs/common/src/chassis/health.py does (design §4, §7):
//
//	DOWN      a critical check is not UP, or shutdown has begun          -> 503
//	DEGRADED  only non-critical checks (neighbours' breakers) are not UP -> 200
//	UP        everything is UP                                            -> 200
package health

import (
	"math"
	"sync"
	"time"
)

// Status of a check or of the whole.
type Status string

const (
	Up       Status = "UP"
	Degraded Status = "DEGRADED"
	Down     Status = "DOWN"
)

// Result of one check: its status and what else it reports ({"breaker": "open"}).
type Result struct {
	Status  Status
	Details map[string]any
}

// Check is one named check. The gateway's checks only read in-process state (a breaker), so
// they run inline; none does I/O that would need a timeout.
type Check struct {
	Name     string
	Critical bool
	Run      func() Result
}

// Shutdown turns readiness DOWN, once and for good, from the moment shutdown begins.
type Shutdown struct {
	once sync.Once
	done chan struct{}
}

func NewShutdown() *Shutdown { return &Shutdown{done: make(chan struct{})} }

// Begin marks the start of shutdown; safe to call more than once.
func (s *Shutdown) Begin() { s.once.Do(func() { close(s.done) }) }

// Begun is closed once shutdown has begun.
func (s *Shutdown) Begun() <-chan struct{} { return s.done }

func (s *Shutdown) ShuttingDown() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// Readiness is the JSON of /health/ready: {"status": ..., "checks": {name: {...}}}.
type Readiness struct {
	Status Status                    `json:"status"`
	Checks map[string]map[string]any `json:"checks"`
}

// HTTPStatus is 503 when DOWN, 200 otherwise.
func (r Readiness) HTTPStatus() int {
	if r.Status == Down {
		return 503
	}
	return 200
}

// Registry runs every check for readiness.
type Registry struct {
	checks   []Check
	shutdown *Shutdown
}

func NewRegistry(shutdown *Shutdown, checks ...Check) *Registry {
	return &Registry{checks: checks, shutdown: shutdown}
}

// Readiness runs the checks; each entry has status, critical and duration_ms, then details.
func (r *Registry) Readiness() Readiness {
	report := make(map[string]map[string]any, len(r.checks)+1)
	for _, check := range r.checks {
		started := time.Now()
		result := check.Run()
		entry := map[string]any{
			"status":      result.Status,
			"critical":    check.Critical,
			"duration_ms": math.Round(time.Since(started).Seconds()*10000) / 10,
		}
		for key, value := range result.Details {
			entry[key] = value
		}
		report[check.Name] = entry
	}
	if r.shutdown.ShuttingDown() {
		report["shutdown"] = map[string]any{"status": Down, "critical": true, "reason": "shutting down"}
	}
	return Readiness{Status: overall(report), Checks: report}
}

func overall(report map[string]map[string]any) Status {
	status := Up
	for _, entry := range report {
		if entry["status"] == Up {
			continue
		}
		if entry["critical"] == true {
			return Down
		}
		status = Degraded
	}
	return status
}
