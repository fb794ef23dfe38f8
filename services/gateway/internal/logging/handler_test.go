package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"regexp"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"
)

var rfc3339UTC = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$`)

func lines(t *testing.T, out *bytes.Buffer) []map[string]any {
	t.Helper()
	var parsed []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var fields map[string]any
		if err := json.Unmarshal([]byte(line), &fields); err != nil {
			t.Fatalf("not a JSON line: %q", line)
		}
		parsed = append(parsed, fields)
	}
	return parsed
}

func TestALineHasTheDesignFieldsInOrder(t *testing.T) {
	var out bytes.Buffer
	log := Named(New(&out, Options{Service: "gateway", Level: slog.LevelDebug}), AccessLogger)
	traceID, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	spanID, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: traceID, SpanID: spanID, TraceFlags: trace.FlagsSampled,
	}))
	log.InfoContext(ctx, "request", "method", "GET", "status", 200, "duration_ms", 1.25)
	raw := out.String()
	order := []string{`"timestamp"`, `"level"`, `"logger"`, `"message"`, `"service"`, `"trace_id"`, `"span_id"`, `"method"`}
	last := -1
	for _, key := range order {
		at := strings.Index(raw, key)
		if at <= last {
			t.Fatalf("%s out of order in %s", key, raw)
		}
		last = at
	}
	line := lines(t, &out)[0]
	if !rfc3339UTC.MatchString(line["timestamp"].(string)) {
		t.Errorf("timestamp %v", line["timestamp"])
	}
	want := map[string]any{"level": "info", "logger": "chassis.access", "message": "request",
		"service": "gateway", "trace_id": traceID.String(), "span_id": spanID.String(),
		"status": 200.0, "duration_ms": 1.25}
	for key, value := range want {
		if line[key] != value {
			t.Errorf("%s = %#v, want %#v", key, line[key], value)
		}
	}
	if !strings.Contains(raw, `"status":200,`) {
		t.Errorf("status is not an integer: %s", raw)
	}
}

func TestLevelsAreSpelledAsTheChassisSpellsThem(t *testing.T) {
	var out bytes.Buffer
	log := New(&out, Options{Service: "gateway", Level: slog.LevelDebug})
	log.Debug("d")
	log.Info("i")
	log.Warn("w")
	log.Error("e")
	log.Log(context.Background(), LevelCritical, "c")
	var got []string
	for _, line := range lines(t, &out) {
		got = append(got, line["level"].(string))
		if _, ok := line["trace_id"]; ok {
			t.Errorf("trace_id outside a span: %v", line)
		}
		if line["logger"] != DefaultLogger {
			t.Errorf("logger %v", line["logger"])
		}
	}
	if strings.Join(got, ",") != "debug,info,warning,error,critical" {
		t.Fatalf("levels %v", got)
	}
}

func TestLinesBelowTheLevelAreDropped(t *testing.T) {
	var out bytes.Buffer
	log := New(&out, Options{Service: "gateway", Level: ParseLevel("WARNING")})
	log.Info("quiet")
	log.Warn("loud")
	if got := lines(t, &out); len(got) != 1 || got[0]["message"] != "loud" {
		t.Fatalf("lines %v", got)
	}
}

func TestSecretsAreNeverWritten(t *testing.T) {
	var out bytes.Buffer
	log := New(&out, Options{Service: "gateway"})
	log.Info("calling with Bearer abc.def.ghi", "authorization", "Bearer xyz",
		"url", "postgresql://user:hunter2@db/x", "note", "password=hunter2")
	raw := out.String()
	for _, secret := range []string{"abc.def.ghi", "xyz", "hunter2"} {
		if strings.Contains(raw, secret) {
			t.Fatalf("%q written: %s", secret, raw)
		}
	}
	if !strings.Contains(raw, Redacted) {
		t.Fatalf("nothing redacted: %s", raw)
	}
}

func TestGroupsAndBoundAttributesAreFlattened(t *testing.T) {
	var out bytes.Buffer
	log := New(&out, Options{Service: "gateway"}).With("peer_service", "books").WithGroup("call")
	log.Info("m", "attempt", 2)
	line := lines(t, &out)[0]
	if line["peer_service"] != "books" || line["call.attempt"] != 2.0 {
		t.Fatalf("line %v", line)
	}
}

func TestConsoleFormatIsPlainWithoutATerminal(t *testing.T) {
	var out bytes.Buffer
	getenv := func(string) string { return "" }
	log := New(&out, Options{Service: "gateway", Console: true, Colors: UseColors(&out, getenv)})
	log.Info("hello", "status", 200)
	raw := out.String()
	if strings.Contains(raw, "\x1b[") || !strings.Contains(raw, "[info") || !strings.Contains(raw, "status=200") {
		t.Fatalf("console line %q", raw)
	}
	forced := func(name string) string {
		if name == "FORCE_COLOR" {
			return "1"
		}
		return ""
	}
	if !UseColors(&out, forced) {
		t.Fatal("FORCE_COLOR ignored")
	}
	both := func(string) string { return "1" }
	if UseColors(&out, both) {
		t.Fatal("NO_COLOR must win over FORCE_COLOR")
	}
}
