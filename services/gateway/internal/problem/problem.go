// Package problem writes errors as application/problem+json (RFC 9457) with the request's
// trace id, the one shape every bookshop service answers errors in (design §4;
// libs/common/src/chassis/errors.py).
package problem

import (
	"bytes"
	"encoding/json"
	"net/http"
	"sort"
	"strconv"

	"go.opentelemetry.io/otel/trace"
)

// ContentType of every error body.
const ContentType = "application/problem+json"

// Problem is one error answer. Extensions are extra members (e.g. "upstream").
type Problem struct {
	Status     int
	Title      string // default: the status' reason phrase
	Detail     string
	Type       string // default: about:blank
	Extensions map[string]any
	Headers    http.Header
}

// Write answers p, naming the trace of r's context.
func Write(w http.ResponseWriter, r *http.Request, p Problem) {
	body := Body(r, p)
	header := w.Header()
	for name, values := range p.Headers {
		header[name] = values
	}
	header.Set("Content-Type", ContentType)
	header.Set("Content-Length", strconv.Itoa(len(body)))
	header.Del("Content-Encoding")
	w.WriteHeader(p.Status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// Body is p's JSON: type, title, status, detail, the extensions, trace_id, in that order.
func Body(r *http.Request, p Problem) []byte {
	if p.Type == "" {
		p.Type = "about:blank"
	}
	if p.Title == "" {
		p.Title = http.StatusText(p.Status)
		if p.Title == "" {
			p.Title = "Error"
		}
	}
	var traceID any // null outside a recorded span, as the chassis writes it
	if span := trace.SpanContextFromContext(r.Context()); span.IsValid() {
		traceID = span.TraceID().String()
	}
	var out bytes.Buffer
	out.WriteByte('{')
	member(&out, "type", p.Type, true)
	member(&out, "title", p.Title, false)
	member(&out, "status", p.Status, false)
	member(&out, "detail", p.Detail, false)
	names := make([]string, 0, len(p.Extensions))
	for name := range p.Extensions {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		switch name {
		case "type", "title", "status", "detail", "trace_id":
			continue // reserved members are never overwritten
		}
		member(&out, name, p.Extensions[name], false)
	}
	member(&out, "trace_id", traceID, false)
	out.WriteByte('}')
	return out.Bytes()
}

func member(out *bytes.Buffer, name string, value any, first bool) {
	if !first {
		out.WriteByte(',')
	}
	encodedName, _ := json.Marshal(name)
	encodedValue, err := json.Marshal(value)
	if err != nil {
		encodedValue = []byte("null")
	}
	out.Write(encodedName)
	out.WriteByte(':')
	out.Write(encodedValue)
}
