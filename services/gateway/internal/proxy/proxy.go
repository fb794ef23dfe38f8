// Package proxy passes /api/<upstream>/<rest> to <upstream's base URL>/<rest> (query kept),
// through the upstream's resilient client, and answers what cannot be passed on as
// problem+json naming the upstream.
package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/bookshop/gateway/internal/problem"
	"github.com/bookshop/gateway/internal/upstream"
)

// Prefix of every proxied path: /api/<upstream>/...
const Prefix = "/api/"

// Proxy forwards to the upstreams. Streams is done when event streams must end (the server
// stops accepting), so that shutdown is not held up by streams that never end on their own.
type Proxy struct {
	MaxBody     int64
	BodyTimeout time.Duration
	Streams     context.Context
}

// Handler forwards to up. stream marks a Server-Sent Events route; template names its client
// span after the upstream's route.
func (p *Proxy) Handler(up *upstream.Upstream, stream bool, template string) http.Handler {
	prefix := Prefix + up.Name
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := p.readBody(w, r)
		if !ok {
			return
		}
		ctx := r.Context()
		if stream {
			var cancel context.CancelFunc
			ctx, cancel = context.WithCancel(ctx)
			defer cancel()
			defer context.AfterFunc(p.Streams, cancel)()
		}
		response, err := up.Do(ctx, upstream.Call{
			Method:   r.Method,
			Path:     upstreamPath(r),
			RawQuery: r.URL.RawQuery,
			Header:   outgoingHeader(r, prefix),
			Body:     body,
			Stream:   stream,
			Template: template,
		})
		if err != nil {
			writeError(w, r, err)
			return
		}
		defer response.Close()
		copyResponseHeader(w.Header(), response.Header)
		if response.Stream != nil {
			pipe(w, response)
			return
		}
		if r.Method == http.MethodHead {
			if length := response.Header.Get("Content-Length"); length != "" {
				w.Header().Set("Content-Length", length)
			}
		} else {
			w.Header().Set("Content-Length", strconv.Itoa(len(response.Body)))
		}
		w.WriteHeader(response.Status)
		_, _ = w.Write(response.Body)
	})
}

// upstreamPath is the escaped path after /api/<upstream>, as the client spelled it (an
// encoded slash stays encoded); "/" for the prefix itself.
func upstreamPath(r *http.Request) string {
	segments := strings.SplitN(r.URL.EscapedPath(), "/", 4) // "", "api", "<upstream>", rest
	if len(segments) < 4 {
		return "/"
	}
	return "/" + segments[3]
}

// readBody buffers the request body (a retry sends it again), bounded in size and time.
func (p *Proxy) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, true
	}
	if r.ContentLength > p.MaxBody {
		tooLarge(w, r, p.MaxBody)
		return nil, false
	}
	control := http.NewResponseController(w)
	_ = control.SetReadDeadline(time.Now().Add(p.BodyTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, p.MaxBody))
	_ = control.SetReadDeadline(time.Time{})
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		tooLarge(w, r, p.MaxBody)
		return nil, false
	case err != nil:
		problem.Write(w, r, problem.Problem{Status: http.StatusRequestTimeout,
			Detail: "the request body did not arrive in time"})
		return nil, false
	}
	return body, true
}

func tooLarge(w http.ResponseWriter, r *http.Request, limit int64) {
	w.Header().Set("Connection", "close") // the rest of the body is not read
	problem.Write(w, r, problem.Problem{Status: http.StatusRequestEntityTooLarge,
		Detail: "the request body is larger than " + strconv.FormatInt(limit, 10) + " bytes"})
}

// writeError answers a call that produced no answer to pass on.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	var failure *upstream.Error
	if !errors.As(err, &failure) {
		problem.Write(w, r, problem.Problem{Status: http.StatusBadGateway, Detail: "the upstream call failed"})
		return
	}
	if failure.Kind == upstream.ClientGone {
		w.WriteHeader(failure.Status()) // nobody reads it; the access log and metrics do
		return
	}
	p := problem.Problem{
		Status: failure.Status(),
		Title:  "Dependency failed",
		Detail: failure.Detail(),
		// "upstream" for the gateway's clients; "dependency" as the chassis names it in the
		// Python services' problems, so one client reads both.
		Extensions: map[string]any{"upstream": failure.Upstream, "dependency": failure.Upstream},
	}
	if failure.Kind == upstream.CircuitOpen {
		p.Title = "Dependency unavailable"
		seconds := max(1, int(failure.RetryAfter.Round(time.Second)/time.Second))
		p.Headers = http.Header{"Retry-After": {strconv.Itoa(seconds)}}
	}
	problem.Write(w, r, p)
}
