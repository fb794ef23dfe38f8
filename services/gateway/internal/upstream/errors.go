package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Kind is what went wrong with a call, and so how the gateway answers it.
type Kind int

const (
	CircuitOpen Kind = iota // 503: the breaker refused the call; it was never tried
	Timeout                 // 504: a connect or read timeout, or the call's deadline
	Unreachable             // 502: the connection failed or broke, after any retries
	ClientGone              // 499: the caller went away (or the gateway is stopping)
)

// Error is a call that produced no answer to pass on; it always names the upstream.
type Error struct {
	Upstream   string
	Kind       Kind
	ErrorType  string        // the error_type label value, e.g. ConnectError, ReadTimeout
	RetryAfter time.Duration // for CircuitOpen: until the breaker lets trial calls through
	detail     string
}

func (e *Error) Error() string { return e.detail }

// Detail is the problem's detail: what failed, never the upstream's URL.
func (e *Error) Detail() string { return e.detail }

// Status is the HTTP status the gateway answers with.
func (e *Error) Status() int {
	switch e.Kind {
	case CircuitOpen:
		return http.StatusServiceUnavailable
	case Timeout:
		return http.StatusGatewayTimeout
	case ClientGone:
		return 499 // nginx's "client closed request": only the access log and metrics see it
	}
	return http.StatusBadGateway
}

func circuitOpenError(name string, retryAfter time.Duration) *Error {
	return &Error{Upstream: name, Kind: CircuitOpen, RetryAfter: retryAfter,
		detail: name + " is unavailable: circuit open"}
}

func deadlineError(name string) *Error {
	return &Error{Upstream: name, Kind: Timeout, ErrorType: "DeadlineExceeded",
		detail: name + " did not answer within the deadline"}
}

// Why an attempt's context was cancelled by its watchdog.
var (
	errReadTimeout = errors.New("read timeout")
	errDeadline    = errors.New("deadline exceeded")
	errTooLarge    = errors.New("answer too large")
)

// dialError marks a failure to open the connection, as opposed to one on an open connection.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// classify names an attempt's failure with the error types of the Python chassis' client
// (httpx's exception names), so dashboards show one vocabulary for every service.
func classify(name string, err error, attemptCtx, callerCtx context.Context, connected bool) *Error {
	if callerCtx.Err() != nil {
		return &Error{Upstream: name, Kind: ClientGone, ErrorType: "ClientGone",
			detail: "the client went away before " + name + " answered"}
	}
	cause := context.Cause(attemptCtx)
	var dial *dialError
	var netErr net.Error
	switch {
	case errors.Is(cause, errReadTimeout), errors.Is(cause, errDeadline):
		kind := "ReadTimeout"
		if !connected {
			kind = "ConnectTimeout"
		}
		return timeoutError(name, kind)
	case errors.Is(cause, errTooLarge):
		return &Error{Upstream: name, Kind: Unreachable, ErrorType: "ResponseTooLarge",
			detail: fmt.Sprintf("%s answered more than %d bytes", name, maxBody)}
	case errors.As(err, &dial) && errors.As(err, &netErr) && netErr.Timeout():
		return timeoutError(name, "ConnectTimeout")
	case errors.As(err, &dial), !connected:
		return &Error{Upstream: name, Kind: Unreachable, ErrorType: "ConnectError",
			detail: name + " is unreachable (ConnectError)"}
	}
	return &Error{Upstream: name, Kind: Unreachable, ErrorType: "ReadError",
		detail: name + " broke the connection (ReadError)"}
}

func timeoutError(name, errorType string) *Error {
	return &Error{Upstream: name, Kind: Timeout, ErrorType: errorType,
		detail: fmt.Sprintf("%s timed out (%s)", name, errorType)}
}
