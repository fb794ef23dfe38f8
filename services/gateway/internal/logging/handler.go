// Package logging writes the design §5 log lines through log/slog: one JSON object a line with
// timestamp (RFC 3339 UTC), level, logger, message, service, trace_id and span_id (inside a
// span), then the structured extras; the same fields and spellings as
// libs/common/src/chassis/logging.py, so one log pipeline reads every service.
package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// Logger names shared with the Python chassis: dashboards and the e2e log checks select lines
// by them (tests/e2e/test_log_lines.py looks for chassis.access).
const (
	AccessLogger  = "chassis.access"
	ClientLogger  = "chassis.client"
	ServerLogger  = "chassis.server"
	DefaultLogger = "gateway"
	loggerKey     = "logger"
)

// LevelCritical is the chassis' "critical", above slog's error.
const LevelCritical = slog.Level(12)

// Options say how and what to write.
type Options struct {
	Service string
	Level   slog.Leveler
	Console bool // the human-readable format (logging.format: console)
	Colors  bool // ANSI colours in the console format
}

// New is a logger writing lines to w; Named gives it a logger name.
func New(w io.Writer, options Options) *slog.Logger {
	if options.Level == nil {
		options.Level = slog.LevelInfo
	}
	return slog.New(&handler{out: &output{w: w}, options: options, logger: DefaultLogger})
}

// Named is logger with its "logger" field set to name.
func Named(logger *slog.Logger, name string) *slog.Logger {
	return logger.With(loggerKey, name)
}

// ParseLevel maps a logging.level value (any case) to its slog level.
func ParseLevel(name string) slog.Level {
	switch name {
	case "DEBUG", "debug":
		return slog.LevelDebug
	case "WARNING", "warning":
		return slog.LevelWarn
	case "ERROR", "error":
		return slog.LevelError
	case "CRITICAL", "critical":
		return LevelCritical
	}
	return slog.LevelInfo
}

// levelName is structlog's spelling of a level: lower case, "warning" not "warn".
func levelName(level slog.Level) string {
	switch {
	case level < slog.LevelInfo:
		return "debug"
	case level < slog.LevelWarn:
		return "info"
	case level < slog.LevelError:
		return "warning"
	case level < LevelCritical:
		return "error"
	}
	return "critical"
}

// output serialises whole lines from every logger that shares it.
type output struct {
	mu sync.Mutex
	w  io.Writer
}

type handler struct {
	out     *output
	options Options
	logger  string
	prefix  string // dotted group names of WithGroup
	attrs   []field
}

type field struct {
	key   string
	value slog.Value
}

func (h *handler) Enabled(_ context.Context, level slog.Level) bool {
	return level >= h.options.Level.Level()
}

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	clone := *h
	clone.attrs = append([]field(nil), h.attrs...)
	for _, attr := range attrs {
		if attr.Key == loggerKey && h.prefix == "" {
			clone.logger = attr.Value.String()
			continue
		}
		clone.attrs = appendAttr(clone.attrs, h.prefix, attr)
	}
	return &clone
}

func (h *handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	clone := *h
	clone.prefix = h.prefix + name + "."
	return &clone
}

func (h *handler) Handle(ctx context.Context, record slog.Record) error {
	fields := make([]field, 0, 8+len(h.attrs)+record.NumAttrs())
	fields = append(fields,
		field{"timestamp", slog.StringValue(record.Time.UTC().Format("2006-01-02T15:04:05.000000Z"))},
		field{"level", slog.StringValue(levelName(record.Level))},
		field{"logger", slog.StringValue(h.logger)},
		field{"message", slog.StringValue(redactString(record.Message))},
		field{"service", slog.StringValue(h.options.Service)},
	)
	if span := trace.SpanContextFromContext(ctx); span.IsValid() {
		fields = append(fields,
			field{"trace_id", slog.StringValue(span.TraceID().String())},
			field{"span_id", slog.StringValue(span.SpanID().String())})
	}
	fields = append(fields, h.attrs...)
	record.Attrs(func(attr slog.Attr) bool {
		fields = appendAttr(fields, h.prefix, attr)
		return true
	})
	var line bytes.Buffer
	if h.options.Console {
		writeConsole(&line, fields, h.options.Colors)
	} else {
		writeJSON(&line, fields)
	}
	line.WriteByte('\n')
	h.out.mu.Lock()
	defer h.out.mu.Unlock()
	_, err := h.out.w.Write(line.Bytes())
	return err
}

// appendAttr flattens groups into dotted keys and redacts secrets on the way in.
func appendAttr(fields []field, prefix string, attr slog.Attr) []field {
	value := attr.Value.Resolve()
	if attr.Equal(slog.Attr{}) {
		return fields
	}
	if value.Kind() == slog.KindGroup {
		inner := prefix
		if attr.Key != "" {
			inner += attr.Key + "."
		}
		for _, member := range value.Group() {
			fields = appendAttr(fields, inner, member)
		}
		return fields
	}
	key := prefix + attr.Key
	return append(fields, field{key, redact(key, value)})
}

func writeJSON(line *bytes.Buffer, fields []field) {
	line.WriteByte('{')
	for i, f := range fields {
		if i > 0 {
			line.WriteByte(',')
		}
		writeJSONString(line, f.key)
		line.WriteByte(':')
		writeJSONValue(line, f.value)
	}
	line.WriteByte('}')
}

func writeJSONValue(line *bytes.Buffer, value slog.Value) {
	switch value.Kind() {
	case slog.KindString:
		writeJSONString(line, value.String())
	case slog.KindInt64:
		line.WriteString(strconv.FormatInt(value.Int64(), 10))
	case slog.KindUint64:
		line.WriteString(strconv.FormatUint(value.Uint64(), 10))
	case slog.KindFloat64:
		encoded, err := json.Marshal(value.Float64())
		if err != nil { // NaN and infinities have no JSON number
			encoded, _ = json.Marshal(fmt.Sprint(value.Float64()))
		}
		line.Write(encoded)
	case slog.KindBool:
		line.WriteString(strconv.FormatBool(value.Bool()))
	case slog.KindDuration:
		line.WriteString(strconv.FormatFloat(value.Duration().Seconds(), 'f', -1, 64))
	case slog.KindTime:
		writeJSONString(line, value.Time().UTC().Format(time.RFC3339Nano))
	default:
		raw := value.Any()
		if err, ok := raw.(error); ok {
			writeJSONString(line, redactString(err.Error()))
			return
		}
		encoded, err := json.Marshal(raw)
		if err != nil {
			writeJSONString(line, fmt.Sprint(raw))
			return
		}
		line.Write(encoded)
	}
}

func writeJSONString(line *bytes.Buffer, s string) {
	encoded, _ := json.Marshal(s) // a string always encodes
	line.Write(encoded)
}
