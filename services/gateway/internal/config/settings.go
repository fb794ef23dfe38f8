// Package config holds the gateway's typed settings and loads them by the conventions of
// libs/common/src/chassis/config.py (design §6): defaults < environment variables (nested keys
// joined by "__", no prefix) < "*_FILE" variables naming a file that holds the value.
package config

import (
	"time"

	"github.com/bookshop/gateway/internal/breaker"
	"github.com/bookshop/gateway/internal/retry"
)

// ServiceName is the gateway's name: its service.name resource, its logs' "service".
const ServiceName = "gateway"

// Settings is every key the gateway reads. Key names (in snake case, under the same sections)
// are the Python chassis' where the gateway has the same knob.
type Settings struct {
	Service      Service
	Environment  string
	HTTP         HTTP
	Logging      Logging
	Shutdown     Shutdown
	Storefront   Storefront
	Dependencies map[string]*Dependency
}

type Service struct {
	Name      string
	Version   string
	Namespace string
}

type HTTP struct {
	Host           string
	Port           int
	MaxBodyBytes   int64
	MaxHeaderBytes int
	HeaderTimeout  time.Duration
	BodyTimeout    time.Duration
}

type Logging struct {
	Level     string // debug, info, warning, error or critical (any case)
	Format    string // json or console
	AccessLog bool
}

type Shutdown struct {
	Drain time.Duration
	Grace time.Duration
}

type Storefront struct {
	JaegerURL string
}

// Dependency is one upstream: where it is and how calls to it are bounded (design §7).
type Dependency struct {
	BaseURL  string
	Critical bool
	Connect  time.Duration
	Read     time.Duration
	Deadline time.Duration
	Retry    retry.Policy
	Breaker  BreakerSettings
}

// BreakerSettings is dependencies.<name>.breaker; SlowCallRatio is of the read timeout.
type BreakerSettings struct {
	Enabled               bool
	WindowSize            int
	MinimumCalls          int
	FailureRateThreshold  float64
	SlowCallRateThreshold float64
	SlowCallRatio         float64
	OpenFor               time.Duration
	HalfOpenCalls         int
}

// Policy is the breaker policy these settings describe for a dependency with read timeout read.
func (b BreakerSettings) Policy(read time.Duration) breaker.Policy {
	return breaker.Policy{
		WindowSize:            b.WindowSize,
		MinimumCalls:          b.MinimumCalls,
		FailureRateThreshold:  b.FailureRateThreshold,
		SlowCallRateThreshold: b.SlowCallRateThreshold,
		SlowCall:              time.Duration(b.SlowCallRatio * float64(read)),
		OpenFor:               b.OpenFor,
		HalfOpenCalls:         b.HalfOpenCalls,
	}
}

// DefaultUpstreams are the services the gateway fronts, at their `make dev` ports (design §8).
var DefaultUpstreams = map[string]string{
	"books": "http://127.0.0.1:8001",
	"shop":  "http://127.0.0.1:8002",
	"chat":  "http://127.0.0.1:8003",
}

// Defaults are the chassis defaults (config.py), with the gateway's own where it has some.
func Defaults() *Settings {
	s := &Settings{
		Service:     Service{Name: ServiceName, Version: "0.1.0", Namespace: "bookshop"},
		Environment: "development",
		HTTP: HTTP{
			Host:           "127.0.0.1",
			Port:           8000,
			MaxBodyBytes:   64 * 1024,
			MaxHeaderBytes: 64 * 1024,
			HeaderTimeout:  10 * time.Second,
			BodyTimeout:    30 * time.Second,
		},
		Logging:      Logging{Level: "INFO", Format: "json", AccessLog: true},
		Shutdown:     Shutdown{Drain: 0, Grace: 20 * time.Second},
		Storefront:   Storefront{JaegerURL: "http://localhost:16686"},
		Dependencies: map[string]*Dependency{},
	}
	for name, url := range DefaultUpstreams {
		dependency := DefaultDependency()
		dependency.BaseURL = url
		s.Dependencies[name] = dependency
	}
	return s
}

// ProductionProfile is what the Python services' config.production.yml sets when
// ENVIRONMENT=production (before any variable): every interface, and time for load balancers
// to take the gateway out of rotation before its listener closes.
func (s *Settings) ProductionProfile() {
	s.HTTP.Host = "0.0.0.0"
	s.Shutdown.Drain = 5 * time.Second
	s.Shutdown.Grace = 20 * time.Second
}

// DefaultDependency is design §7 with no base URL (which has no default).
func DefaultDependency() *Dependency {
	return &Dependency{
		Connect:  500 * time.Millisecond,
		Read:     2 * time.Second,
		Deadline: 5 * time.Second,
		Retry:    retry.DefaultPolicy,
		Breaker: BreakerSettings{
			Enabled:               true,
			WindowSize:            20,
			MinimumCalls:          10,
			FailureRateThreshold:  0.5,
			SlowCallRateThreshold: 1.0,
			SlowCallRatio:         0.8,
			OpenFor:               10 * time.Second,
			HalfOpenCalls:         3,
		},
	}
}
