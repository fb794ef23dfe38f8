package config

import (
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// field parses one key's raw value into the settings; ok is false when the value is not
// acceptable, and expect then says what would be (never echoing the value: it may be a secret).
type field struct {
	expect string
	set    func(raw string) (ok bool)
}

// fields are the keys of every section but dependencies, by dotted path.
func (s *Settings) fields() map[string]field {
	return map[string]field{
		"service.name":                text(&s.Service.Name),
		"service.version":             text(&s.Service.Version),
		"service.namespace":           text(&s.Service.Namespace),
		"environment":                 text(&s.Environment),
		"http.host":                   text(&s.HTTP.Host),
		"http.port":                   integer(&s.HTTP.Port, 0, 65535),
		"http.max_body_bytes":         integer(&s.HTTP.MaxBodyBytes, 1, math.MaxInt64),
		"http.max_header_bytes":       integer(&s.HTTP.MaxHeaderBytes, 1024, math.MaxInt32),
		"http.header_timeout_seconds": seconds(&s.HTTP.HeaderTimeout, false),
		"http.body_timeout_seconds":   seconds(&s.HTTP.BodyTimeout, false),
		"logging.level":               levelName(&s.Logging.Level),
		"logging.format":              choice(&s.Logging.Format, "json", "console"),
		"logging.access_log":          boolean(&s.Logging.AccessLog),
		"shutdown.drain_seconds":      seconds(&s.Shutdown.Drain, true),
		"shutdown.grace_seconds":      seconds(&s.Shutdown.Grace, false),
		"storefront.jaeger_url":       httpURL(&s.Storefront.JaegerURL),
	}
}

// fields of one dependency, by their path under dependencies.<name>.
func (d *Dependency) fields() map[string]field {
	b := &d.Breaker
	return map[string]field{
		"base_url":                         httpURL(&d.BaseURL),
		"critical":                         boolean(&d.Critical),
		"connect_timeout_seconds":          seconds(&d.Connect, false),
		"read_timeout_seconds":             seconds(&d.Read, false),
		"deadline_seconds":                 seconds(&d.Deadline, false),
		"retry.max_attempts":               integer(&d.Retry.MaxAttempts, 1, 10),
		"retry.base_seconds":               seconds(&d.Retry.Base, true),
		"retry.cap_seconds":                seconds(&d.Retry.Cap, true),
		"breaker.enabled":                  boolean(&b.Enabled),
		"breaker.window_size":              integer(&b.WindowSize, 1, 10_000),
		"breaker.minimum_calls":            integer(&b.MinimumCalls, 1, 10_000),
		"breaker.failure_rate_threshold":   fraction(&b.FailureRateThreshold, 1),
		"breaker.slow_call_rate_threshold": fraction(&b.SlowCallRateThreshold, 1),
		"breaker.slow_call_ratio":          fraction(&b.SlowCallRatio, math.MaxFloat64),
		"breaker.open_seconds":             seconds(&b.OpenFor, false),
		"breaker.half_open_calls":          integer(&b.HalfOpenCalls, 1, 10_000),
	}
}

func text(target *string) field {
	return field{expect: "a non-empty string", set: func(raw string) bool {
		*target = raw
		return raw != ""
	}}
}

func integer[T int | int64](target *T, low, high int64) field {
	expect := fmt.Sprintf("an integer from %d to %d", low, high)
	if high >= math.MaxInt32 {
		expect = fmt.Sprintf("an integer of at least %d", low)
	}
	return field{expect: expect, set: func(raw string) bool {
		value, err := strconv.ParseInt(strings.TrimSpace(raw), 10, 64)
		if err != nil || value < low || value > high {
			return false
		}
		*target = T(value)
		return true
	}}
}

// seconds reads a number of seconds, as the chassis' *_seconds keys are (0.5, 2, 10).
func seconds(target *time.Duration, zeroAllowed bool) field {
	expect := "a number of seconds greater than 0"
	if zeroAllowed {
		expect = "a number of seconds, 0 or more"
	}
	return field{expect: expect, set: func(raw string) bool {
		value, err := strconv.ParseFloat(strings.TrimSpace(raw), 64)
		if err != nil || math.IsNaN(value) || math.IsInf(value, 0) || value < 0 ||
			(value == 0 && !zeroAllowed) || value > 365*24*3600 {
			return false
		}
		*target = time.Duration(value * float64(time.Second))
		return true
	}}
}

// fraction reads a number in (0, high].
func fraction(target *float64, high float64) field {
	expect := fmt.Sprintf("a number greater than 0 and at most %g", high)
	if high == math.MaxFloat64 {
		expect = "a number greater than 0"
	}
	return field{expect: expect, set: func(raw string) bool {
		value, err := strconv.ParseFloat(strings.TrimSpace(raw), 64)
		if err != nil || math.IsNaN(value) || value <= 0 || value > high {
			return false
		}
		*target = value
		return true
	}}
}

// boolean takes the spellings pydantic takes for the Python services.
func boolean(target *bool) field {
	return field{expect: "a boolean (true or false)", set: func(raw string) bool {
		switch strings.ToLower(strings.TrimSpace(raw)) {
		case "true", "1", "yes", "on", "t", "y":
			*target = true
		case "false", "0", "no", "off", "f", "n":
			*target = false
		default:
			return false
		}
		return true
	}}
}

func choice(target *string, options ...string) field {
	return field{expect: "one of " + strings.Join(options, ", "), set: func(raw string) bool {
		for _, option := range options {
			if raw == option {
				*target = raw
				return true
			}
		}
		return false
	}}
}

// levelName is case-insensitive, as the chassis' logging.level pattern is.
func levelName(target *string) field {
	options := []string{"debug", "info", "warning", "error", "critical"}
	return field{expect: "one of " + strings.Join(options, ", "), set: func(raw string) bool {
		for _, option := range options {
			if strings.EqualFold(raw, option) {
				*target = strings.ToUpper(option)
				return true
			}
		}
		return false
	}}
}

func httpURL(target *string) field {
	return field{expect: "an http:// or https:// URL", set: func(raw string) bool {
		parsed, err := url.Parse(raw)
		if err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Host == "" {
			return false
		}
		*target = raw
		return true
	}}
}
