package server

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"

	"github.com/bookshop/gateway/internal/logging"
)

// flushTimeout bounds the export of the last spans at exit (the chassis' FLUSH_TIMEOUT_MILLIS).
const flushTimeout = 5 * time.Second

// Serve answers on listener until the first signal arrives on signals, then shuts down as
// chassis/server.py does: readiness turns 503 at once; after shutdown.drain_seconds (time for
// a load balancer to stop routing here) the listener closes and the event streams end; the
// requests in flight get up to shutdown.grace_seconds to finish; the last spans are flushed.
// A second signal skips the rest of the drain; a third stops waiting for requests in flight.
// It returns nil after a shutdown (the process then exits 0), an error if serving failed.
func (g *Gateway) Serve(listener net.Listener, signals <-chan os.Signal) error {
	log := logging.Named(g.Log, logging.ServerLogger)
	settings := g.Settings
	server := &http.Server{
		Handler:           g.Handler(),
		ReadHeaderTimeout: settings.HTTP.HeaderTimeout,
		MaxHeaderBytes:    settings.HTTP.MaxHeaderBytes,
		IdleTimeout:       5 * time.Second, // uvicorn's keep-alive, as the Python services
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		// No ReadTimeout or WriteTimeout: they would cut event streams. Request bodies have
		// their own deadline (http.body_timeout_seconds, in the proxy).
	}
	server.RegisterOnShutdown(g.StopStreams)
	served := make(chan error, 1)
	go func() { served <- server.Serve(listener) }()
	log.Info("listening", "address", listener.Addr().String())

	var received os.Signal
	select {
	case received = <-signals:
	case err := <-served:
		return err
	}
	g.Shutdown.Begin()
	drain := settings.Shutdown.Drain
	log.Info("shutdown begun", "signal", signalName(received), "drain_seconds", drain.Seconds())
	timer := time.NewTimer(drain)
	select {
	case <-timer.C:
	case received = <-signals:
		timer.Stop()
		log.Info("drain skipped", "signal", signalName(received))
	}

	grace, cancel := context.WithTimeout(context.Background(), settings.Shutdown.Grace)
	defer cancel()
	go func() {
		select {
		case <-signals:
			cancel()
		case <-grace.Done():
		}
	}()
	if err := server.Shutdown(grace); err != nil {
		log.Warn("requests still in flight at the end of the grace period are cut off",
			"grace_seconds", settings.Shutdown.Grace.Seconds())
		_ = server.Close()
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("serving failed during shutdown", "error", err)
	}
	flush, cancelFlush := context.WithTimeout(context.Background(), flushTimeout)
	defer cancelFlush()
	if err := g.Close(flush); err != nil {
		log.Warn("spans could not be flushed", "error", err)
	}
	log.Info("shutdown complete")
	return nil
}

// signalName spells a signal as the Python services' logs do (SIGTERM, not "terminated").
func signalName(s os.Signal) string {
	switch s {
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGINT:
		return "SIGINT"
	}
	return s.String()
}
