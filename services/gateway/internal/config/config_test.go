package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func load(t *testing.T, environ ...string) *Settings {
	t.Helper()
	settings, err := Load(environ)
	if err != nil {
		t.Fatalf("Load(%v): %v", environ, err)
	}
	return settings
}

func refused(t *testing.T, environ ...string) string {
	t.Helper()
	_, err := Load(environ)
	var configError *Error
	if !errors.As(err, &configError) {
		t.Fatalf("Load(%v) accepted it (err %v)", environ, err)
	}
	return err.Error()
}

func TestDefaultsAreTheChassisAndDesignSection7(t *testing.T) {
	s := load(t)
	if s.Service.Name != "gateway" || s.HTTP.Host != "127.0.0.1" || s.HTTP.Port != 8000 {
		t.Fatalf("service/http defaults: %+v %+v", s.Service, s.HTTP)
	}
	if s.Shutdown.Drain != 0 || s.Shutdown.Grace != 20*time.Second { // the chassis' (config.py)
		t.Fatalf("shutdown defaults: %+v", s.Shutdown)
	}
	if s.Storefront.JaegerURL != "http://localhost:16686" {
		t.Fatalf("jaeger url %q", s.Storefront.JaegerURL)
	}
	want := map[string]string{"books": "http://127.0.0.1:8001", "shop": "http://127.0.0.1:8002",
		"chat": "http://127.0.0.1:8003"}
	if len(s.Dependencies) != 3 {
		t.Fatalf("dependencies %v", s.Dependencies)
	}
	for name, url := range want {
		d := s.Dependencies[name]
		if d.BaseURL != url || d.Connect != 500*time.Millisecond || d.Read != 2*time.Second ||
			d.Retry.MaxAttempts != 3 || d.Retry.Base != 50*time.Millisecond || d.Retry.Cap != time.Second {
			t.Fatalf("%s: %+v", name, d)
		}
		p := d.Breaker.Policy(d.Read)
		if p.WindowSize != 20 || p.MinimumCalls != 10 || p.FailureRateThreshold != 0.5 ||
			p.SlowCallRateThreshold != 1 || p.SlowCall != 1600*time.Millisecond ||
			p.OpenFor != 10*time.Second || p.HalfOpenCalls != 3 {
			t.Fatalf("%s breaker: %+v", name, p)
		}
	}
}

func TestEnvironmentVariablesOverrideDefaults(t *testing.T) {
	s := load(t,
		"HTTP__PORT=9123", "http__host=0.0.0.0", "LOGGING__LEVEL=debug", "LOGGING__FORMAT=console",
		"DEPENDENCIES__BOOKS__BASE_URL=http://books:8000",
		"DEPENDENCIES__BOOKS__READ_TIMEOUT_SECONDS=1.5",
		"DEPENDENCIES__BOOKS__RETRY__MAX_ATTEMPTS=5",
		"DEPENDENCIES__BOOKS__BREAKER__OPEN_SECONDS=2.5",
		"DEPENDENCIES__BOOKS__BREAKER__ENABLED=false",
		"STOREFRONT__JAEGER_URL=https://jaeger.example",
		"SHUTDOWN__DRAIN_SECONDS=0",
		"ENVIRONMENT=production",
	)
	books := s.Dependencies["books"]
	if s.HTTP.Port != 9123 || s.HTTP.Host != "0.0.0.0" || s.Logging.Level != "DEBUG" ||
		s.Logging.Format != "console" || books.BaseURL != "http://books:8000" ||
		books.Read != 1500*time.Millisecond || books.Retry.MaxAttempts != 5 ||
		books.Breaker.OpenFor != 2500*time.Millisecond || books.Breaker.Enabled ||
		s.Storefront.JaegerURL != "https://jaeger.example" || s.Shutdown.Drain != 0 ||
		s.Environment != "production" {
		t.Fatalf("overrides not applied: %+v %+v", s, books)
	}
	if s.Dependencies["shop"].BaseURL != "http://127.0.0.1:8002" {
		t.Fatal("another dependency changed")
	}
	if got := books.Breaker.Policy(books.Read).SlowCall; got != 1200*time.Millisecond {
		t.Fatalf("slow call = 80%% of the read timeout: %s", got)
	}
}

func TestTheProductionProfileIsThePythonServicesOne(t *testing.T) {
	development := load(t)
	if development.HTTP.Host != "127.0.0.1" || development.Shutdown.Drain != 0 {
		t.Fatalf("development: %+v %+v", development.HTTP, development.Shutdown)
	}
	production := load(t, "ENVIRONMENT=production")
	if production.HTTP.Host != "0.0.0.0" || production.Shutdown.Drain != 5*time.Second ||
		production.Shutdown.Grace != 20*time.Second {
		t.Fatalf("production: %+v %+v", production.HTTP, production.Shutdown)
	}
	overridden := load(t, "ENVIRONMENT=production", "HTTP__HOST=127.0.0.1")
	if overridden.HTTP.Host != "127.0.0.1" {
		t.Fatal("a variable wins over the profile")
	}
}

func TestFileVariablesWinOverPlainOnes(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "port")
	if err := os.WriteFile(file, []byte("9555\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := load(t, "HTTP__PORT=9123", "HTTP__PORT_FILE="+file)
	if s.HTTP.Port != 9555 {
		t.Fatalf("HTTP__PORT_FILE did not win: %d", s.HTTP.Port)
	}
	message := refused(t, "DEPENDENCIES__CHAT__BASE_URL_FILE="+filepath.Join(dir, "missing"))
	if !strings.Contains(message, "dependencies.chat.base_url") || !strings.Contains(message, "cannot read secret file") {
		t.Fatalf("message %q", message)
	}
}

func TestABadValueIsRefusedNamingTheKeyNeverTheValue(t *testing.T) {
	cases := map[string]string{
		"HTTP__PORT=eighty":                                       "http.port (env HTTP__PORT): expected an integer from 0 to 65535",
		"HTTP__PORT=70000":                                        "http.port (env HTTP__PORT)",
		"LOGGING__LEVEL=loud":                                     "logging.level (env LOGGING__LEVEL): expected one of debug",
		"LOGGING__FORMAT=xml":                                     "logging.format (env LOGGING__FORMAT)",
		"DEPENDENCIES__BOOKS__BASE_URL=ftp://secret-host":         "dependencies.books.base_url (env DEPENDENCIES__BOOKS__BASE_URL): expected an http:// or https:// URL",
		"DEPENDENCIES__SHOP__CONNECT_TIMEOUT_SECONDS=0":           "dependencies.shop.connect_timeout_seconds",
		"DEPENDENCIES__SHOP__BREAKER__FAILURE_RATE_THRESHOLD=1.5": "dependencies.shop.breaker.failure_rate_threshold",
		"DEPENDENCIES__SHOP__RETRY__MAX_ATTEMPTS=0":               "dependencies.shop.retry.max_attempts",
		"DEPENDENCIES__SHOP__BREAKER__ENABLED=maybe":              "dependencies.shop.breaker.enabled (env DEPENDENCIES__SHOP__BREAKER__ENABLED): expected a boolean",
		"SHUTDOWN__GRACE_SECONDS=-1":                              "shutdown.grace_seconds",
		"STOREFRONT__JAEGER_URL=localhost:16686":                  "storefront.jaeger_url",
		"HTTP__PROT=8000":                                         "http.prot (env HTTP__PROT): unknown key",
		"DEPENDENCIES__BOOKS__BREAKER__WINDOW_SIZE=5":             "dependencies.books.breaker.minimum_calls (env DEPENDENCIES__BOOKS__BREAKER__MINIMUM_CALLS): must not exceed breaker.window_size",
		"DEPENDENCIES__REVIEWS__CRITICAL=true":                    "dependencies.reviews.base_url (env DEPENDENCIES__REVIEWS__BASE_URL): field required",
		"DEPENDENCIES__BOOKS__TOKEN=s3cret-token":                 "dependencies.books.token (env DEPENDENCIES__BOOKS__TOKEN): not supported",
	}
	for variable, want := range cases {
		message := refused(t, variable)
		if !strings.Contains(message, want) {
			t.Errorf("%s: message %q does not contain %q", variable, message, want)
		}
		_, value, _ := strings.Cut(variable, "=")
		if strings.Contains(message, value) && len(value) > 3 {
			t.Errorf("%s: the message echoes the value: %q", variable, message)
		}
	}
}

func TestEveryProblemIsListed(t *testing.T) {
	message := refused(t, "HTTP__PORT=x", "LOGGING__LEVEL=y")
	if !strings.Contains(message, "http.port") || !strings.Contains(message, "logging.level") {
		t.Fatalf("message %q", message)
	}
}

func TestVariablesOfOtherSectionsAreNotTheGatewaysBusiness(t *testing.T) {
	s := load(t, "AUTH__PUBLIC_KEY_FILE=/nowhere", "FAULTS__ENABLED=true", "DATABASE_URL=postgresql://x",
		"DATABASE__POOL_SIZE=3", "HEALTH__CHECK_TIMEOUT_SECONDS=1", "SERVICE=books", "HTTP_PROXY=http://p",
		"PATH=/bin", "HTTP=1")
	if s.Service.Name != "gateway" {
		t.Fatalf("SERVICE=books replaced the service section: %q", s.Service.Name)
	}
}

func TestANewDependencyIsAnUpstream(t *testing.T) {
	s := load(t, "DEPENDENCIES__REVIEWS__BASE_URL=http://reviews:8000", "DEPENDENCIES__REVIEWS__CRITICAL=yes")
	reviews := s.Dependencies["reviews"]
	if reviews == nil || !reviews.Critical || reviews.Read != 2*time.Second {
		t.Fatalf("reviews: %+v", reviews)
	}
}
