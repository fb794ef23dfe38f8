// Package server assembles the gateway: its routes, the middleware every request passes
// (telemetry outermost, then security headers), the chassis endpoints of design §4, the
// storefront and the graceful shutdown.
package server

import (
	"context"
	"io"
	"io/fs"
	"log/slog"
	"sort"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/bookshop/gateway/internal/config"
	"github.com/bookshop/gateway/internal/health"
	"github.com/bookshop/gateway/internal/logging"
	"github.com/bookshop/gateway/internal/metrics"
	"github.com/bookshop/gateway/internal/tracing"
	"github.com/bookshop/gateway/internal/upstream"
)

// Options are what the process provides (tests provide their own).
type Options struct {
	LogOutput      io.Writer
	Getenv         func(string) string
	Web            fs.FS                    // the storefront's files
	SpanProcessors []sdktrace.SpanProcessor // more places for spans (tests record them)
}

// Gateway is one gateway instance.
type Gateway struct {
	Settings  *config.Settings
	Log       *slog.Logger
	Metrics   *metrics.Metrics
	Provider  *sdktrace.TracerProvider
	Tracer    trace.Tracer
	Upstreams map[string]*upstream.Upstream
	Shutdown  *health.Shutdown
	Health    *health.Registry
	Info      Info

	streams     context.Context
	stopStreams context.CancelFunc
	storefront  *storefront
}

// New builds a gateway from settings; it listens nowhere yet (see Handler and Serve).
func New(ctx context.Context, settings *config.Settings, options Options) (*Gateway, error) {
	g := &Gateway{
		Settings:  settings,
		Metrics:   metrics.New(),
		Upstreams: map[string]*upstream.Upstream{},
		Shutdown:  health.NewShutdown(),
	}
	g.Log = logging.New(options.LogOutput, logging.Options{
		Service: settings.Service.Name,
		Level:   logging.ParseLevel(settings.Logging.Level),
		Console: settings.Logging.Format == "console",
		Colors:  settings.Logging.Format == "console" && logging.UseColors(options.LogOutput, options.Getenv),
	})
	provider, err := tracing.NewProvider(ctx, tracing.Identity{
		Service:     settings.Service.Name,
		Version:     settings.Service.Version,
		Namespace:   settings.Service.Namespace,
		Environment: settings.Environment,
	}, options.Getenv, options.SpanProcessors...)
	if err != nil {
		return nil, err
	}
	g.Provider = provider
	g.Tracer = provider.Tracer(tracing.TracerName)
	var checks []health.Check
	for _, name := range upstreamNames(settings) {
		up, err := upstream.New(name, *settings.Dependencies[name], g.Metrics, g.Tracer, g.Log)
		if err != nil {
			return nil, err
		}
		g.Upstreams[name] = up
		checks = append(checks, up.Check())
	}
	g.Health = health.NewRegistry(g.Shutdown, checks...)
	g.Info = collectInfo(settings, options.Getenv)
	g.Metrics.ServiceInfo.WithLabelValues(g.Info.Service, g.Info.Version, g.Info.Commit).Set(1)
	g.streams, g.stopStreams = context.WithCancel(context.Background())
	if g.storefront, err = newStorefront(options.Web); err != nil {
		return nil, err
	}
	return g, nil
}

// StopStreams ends every proxied event stream (when the server stops accepting).
func (g *Gateway) StopStreams() { g.stopStreams() }

// Close flushes the spans not yet exported and drops idle upstream connections.
func (g *Gateway) Close(ctx context.Context) error {
	g.stopStreams()
	for _, up := range g.Upstreams {
		up.Close()
	}
	return g.Provider.Shutdown(ctx)
}

func upstreamNames(settings *config.Settings) []string {
	names := make([]string, 0, len(settings.Dependencies))
	for name := range settings.Dependencies {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}
