package upstream

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/bookshop/gateway/internal/metrics"
	"github.com/bookshop/gateway/internal/tracing"
)

// maxBody bounds a buffered answer. Answers are read whole inside the attempt, as the chassis
// client reads them, so that the read timeout, the breaker's slow-call clock and the retry
// decision cover the whole answer and a failure half-way is still answered as a problem.
const maxBody = 16 << 20

// attempt is one try: a client span, one client-duration sample, trace context injected.
func (u *Upstream) attempt(ctx context.Context, call Call, number int,
	deadline time.Time) (*Response, *Error) {
	started := time.Now()
	target := u.target(call)
	ctx, span := u.startSpan(ctx, call, number, target)
	attemptCtx, cancel := context.WithCancelCause(ctx)
	var connected atomic.Bool
	traced := httptrace.WithClientTrace(attemptCtx, &httptrace.ClientTrace{
		GotConn: func(httptrace.GotConnInfo) { connected.Store(true) },
	})
	request, err := http.NewRequestWithContext(traced, call.Method, target.String(), bytes.NewReader(call.Body))
	if err != nil { // the base URL was validated at start-up: not expected
		cancel(err)
		failure := &Error{Upstream: u.Name, Kind: Unreachable, ErrorType: "InvalidURL",
			detail: u.Name + " cannot be called (InvalidURL)"}
		u.fail(span, call.Method, started, failure)
		return nil, failure
	}
	if len(call.Body) == 0 {
		request.Body, request.GetBody, request.ContentLength = http.NoBody, nil, 0
	}
	request.Header = call.Header.Clone()
	tracing.Propagator.Inject(ctx, propagation.HeaderCarrier(request.Header))

	dog := watch(cancel, u.settings.Read, deadline, call.Stream)
	response, err := u.client.RoundTrip(request)
	if err != nil {
		dog.stop()
		failure := classify(u.Name, err, attemptCtx, ctx, connected.Load())
		cancel(nil)
		u.fail(span, call.Method, started, failure)
		return nil, failure
	}
	answer := &Response{Status: response.StatusCode, Header: response.Header}
	if call.Stream {
		if !dog.stop() { // the deadline passed just as the head arrived
			_ = response.Body.Close()
			cancel(nil)
			failure := timeoutError(u.Name, "ReadTimeout")
			u.fail(span, call.Method, started, failure)
			return nil, failure
		}
		// The span lasts as long as the stream; the metric and the breaker see the head only.
		u.answered(span, call.Method, started, response.StatusCode)
		answer.Stream = &stream{ReadCloser: response.Body, done: func() { cancel(nil); span.End() }}
		return answer, nil
	}
	answer.Body, err = dog.readAll(response.Body)
	_ = response.Body.Close()
	dog.stop()
	cancel(nil)
	if err != nil {
		failure := classify(u.Name, err, attemptCtx, ctx, true)
		u.fail(span, call.Method, started, failure)
		return nil, failure
	}
	u.answered(span, call.Method, started, response.StatusCode)
	span.End()
	return answer, nil
}

// target is the upstream URL of call: the base URL's path, then the call's, then its query.
func (u *Upstream) target(call Call) url.URL {
	target := *u.base
	target.RawPath = u.base.EscapedPath() + call.Path
	target.Path, _ = url.PathUnescape(target.RawPath)
	target.RawQuery = call.RawQuery
	return target
}

// startSpan starts the attempt's client span (OpenTelemetry HTTP client conventions).
func (u *Upstream) startSpan(ctx context.Context, call Call, number int, target url.URL) (context.Context, trace.Span) {
	name := call.Method
	if call.Template != "" {
		name += " " + call.Template
	}
	full := target
	full.RawQuery, full.User = "", nil // a query may hold personal data, user info a password
	attributes := []attribute.KeyValue{
		attribute.String("http.request.method", call.Method),
		attribute.String("server.address", target.Hostname()),
		attribute.String("url.full", full.String()),
		attribute.String("peer.service", u.Name),
	}
	if port, err := strconv.Atoi(target.Port()); err == nil {
		attributes = append(attributes, attribute.Int("server.port", port))
	}
	if number > 1 {
		attributes = append(attributes, attribute.Int("http.request.resend_count", number-1))
	}
	return u.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attributes...))
}

func (u *Upstream) answered(span trace.Span, method string, started time.Time, status int) {
	span.SetAttributes(attribute.Int("http.response.status_code", status))
	if status >= 500 {
		span.SetAttributes(attribute.String("error.type", strconv.Itoa(status)))
		span.SetStatus(codes.Error, "")
	}
	u.observe(span, method, started, strconv.Itoa(status), "")
}

func (u *Upstream) fail(span trace.Span, method string, started time.Time, failure *Error) {
	span.SetAttributes(attribute.String("error.type", failure.ErrorType))
	span.SetStatus(codes.Error, failure.detail)
	u.observe(span, method, started, "", failure.ErrorType)
	span.End()
}

func (u *Upstream) observe(span trace.Span, method string, started time.Time, status, errorType string) {
	traceID := ""
	if context := span.SpanContext(); context.IsValid() {
		traceID = context.TraceID().String()
	}
	observer := u.metrics.ClientDuration.WithLabelValues(u.Name, metrics.NormaliseMethod(method),
		status, errorType)
	metrics.Observe(observer, time.Since(started).Seconds(), traceID)
}

// stream is an event stream's body; closing it ends the attempt and its span.
type stream struct {
	io.ReadCloser
	once sync.Once
	done func()
}

func (s *stream) Close() error {
	err := s.ReadCloser.Close()
	s.once.Do(s.done)
	return err
}
