// Package cli is the gateway's command line, shaped like the Python services' (design §9):
// `gateway serve [--host H] [--port P]` and `gateway version`.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/bookshop/gateway/internal/config"
	"github.com/bookshop/gateway/internal/logging"
	"github.com/bookshop/gateway/internal/server"
	"github.com/bookshop/gateway/internal/tracing"
)

const usage = `usage: gateway <command>

commands:
  serve [--host H] [--port P]   run the production server (graceful shutdown on SIGTERM)
  version                       print the version
`

// Exit statuses: 2 for a usage or configuration mistake, as the Python services' CLI.
const (
	exitFailure = 1
	exitUsage   = 2
)

// Main runs the command in args (without the program name) and returns the exit status.
func Main(args, environ []string, stdout, stderr io.Writer, web fs.FS) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], environ, stdout, stderr, web)
	case "version":
		settings, err := config.Load(environ)
		if err != nil {
			settings = config.Defaults()
		}
		fmt.Fprintf(stdout, "%s %s\n", settings.Service.Name, settings.Service.Version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "gateway: unknown command %q\n%s", args[0], usage)
	return exitUsage
}

func serve(args, environ []string, stdout, stderr io.Writer, web fs.FS) int {
	flags := flag.NewFlagSet("gateway serve", flag.ContinueOnError)
	flags.SetOutput(stderr)
	host := flags.String("host", "", "interface to listen on (default http.host)")
	port := flags.String("port", "", "port to listen on (default http.port)")
	if err := flags.Parse(args); err != nil {
		return exitUsage
	}
	settings, err := config.Load(environ)
	if err != nil {
		fmt.Fprintf(stderr, "gateway: %v\n", err)
		return exitUsage
	}
	if *host != "" {
		settings.HTTP.Host = *host
	}
	if *port != "" {
		value, err := strconv.Atoi(*port)
		if err != nil || value < 0 || value > 65535 {
			fmt.Fprintln(stderr, "gateway: --port: expected an integer from 0 to 65535")
			return exitUsage
		}
		settings.HTTP.Port = value
	}
	ctx := context.Background()
	gateway, err := server.New(ctx, settings, server.Options{
		LogOutput: stdout,
		Getenv:    getenv(environ),
		Web:       web,
	})
	if err != nil {
		fmt.Fprintf(stderr, "gateway: %v\n", err)
		return exitUsage
	}
	tracing.RouteDiagnostics(logging.Named(gateway.Log, "opentelemetry"))
	address := net.JoinHostPort(settings.HTTP.Host, strconv.Itoa(settings.HTTP.Port))
	listener, err := net.Listen("tcp", address)
	if err != nil {
		gateway.Log.Error("cannot listen", "address", address, "error", err)
		_ = gateway.Close(ctx)
		return exitFailure
	}
	signals := make(chan os.Signal, 3)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(signals)
	if err := gateway.Serve(listener, signals); err != nil && !errors.Is(err, net.ErrClosed) {
		gateway.Log.Error("serving failed", "error", err)
		return exitFailure
	}
	return 0
}

// getenv looks a variable up in environ, as os.Getenv does in the process' own.
func getenv(environ []string) func(string) string {
	values := make(map[string]string, len(environ))
	for _, entry := range environ {
		if name, value, ok := strings.Cut(entry, "="); ok {
			values[name] = value
		}
	}
	return func(name string) string { return values[name] }
}
