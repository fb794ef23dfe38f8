package server

import (
	"encoding/json"
	"net/http"
	"runtime"
	"strings"
	"testing"
)

func TestLivenessNeverLooksAtUpstreams(t *testing.T) {
	h := start(t)
	response, body := h.get(LivePath)
	if response.StatusCode != 200 || string(body) != `{"status":"UP"}` {
		t.Fatalf("%d %s", response.StatusCode, body)
	}
}

func TestReadinessHasOneCheckPerUpstream(t *testing.T) {
	h := start(t)
	for _, path := range []string{ReadyPath, HealthcheckPath} {
		response, body := h.get(path)
		var readiness struct {
			Status string                    `json:"status"`
			Checks map[string]map[string]any `json:"checks"`
		}
		if err := json.Unmarshal(body, &readiness); err != nil || response.StatusCode != 200 {
			t.Fatalf("%s: %d %s", path, response.StatusCode, body)
		}
		if readiness.Status != "UP" || len(readiness.Checks) != 3 {
			t.Fatalf("%s: %s", path, body)
		}
		for _, name := range []string{"books", "shop", "chat"} {
			check := readiness.Checks[name]
			if check["status"] != "UP" || check["critical"] != false || check["breaker"] != "closed" {
				t.Fatalf("%s check: %v", name, check)
			}
			if _, ok := check["duration_ms"].(float64); !ok {
				t.Fatalf("%s check without duration_ms: %v", name, check)
			}
		}
	}
}

func TestInfoSaysWhatRuns(t *testing.T) {
	h := start(t, "GIT_COMMIT=abc123def456", "SERVICE__VERSION=1.2.3", "ENVIRONMENT=staging")
	_, body := h.get(InfoPath)
	var info map[string]string
	if err := json.Unmarshal(body, &info); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"service": "gateway", "version": "1.2.3", "commit": "abc123def456",
		"environment": "staging", "go_version": runtime.Version()}
	for key, value := range want {
		if info[key] != value {
			t.Errorf("%s = %q, want %q", key, info[key], value)
		}
	}
	if !rfc3339UTC.MatchString(info["started_at"]) {
		t.Errorf("started_at %q", info["started_at"])
	}
}

func TestConfigJSONTellsThePageWhereJaegerIs(t *testing.T) {
	h := start(t, "STOREFRONT__JAEGER_URL=https://traces.example:16686")
	response, body := h.get(ConfigPath)
	if response.Header.Get("Content-Type") != "application/json" ||
		string(body) != `{"jaeger_url":"https://traces.example:16686"}` {
		t.Fatalf("%v %s", response.Header, body)
	}
}

func TestTheStorefrontIsServedFromItsFilesUnderAStrictPolicy(t *testing.T) {
	h := start(t)
	response, body := h.get("/")
	if response.StatusCode != 200 || !strings.HasPrefix(response.Header.Get("Content-Type"), "text/html") ||
		!strings.Contains(string(body), "<title>Bookshop</title>") {
		t.Fatalf("/: %d %v", response.StatusCode, response.Header)
	}
	policy := response.Header.Get("Content-Security-Policy")
	if !strings.Contains(policy, "frame-ancestors 'none'") || !strings.Contains(policy, "script-src 'self'") ||
		strings.Contains(policy, "unsafe-inline") {
		t.Fatalf("policy %q", policy)
	}
	if response.Header.Get("X-Frame-Options") != "DENY" {
		t.Fatal("no X-Frame-Options")
	}
	types := map[string]string{"/static/app.js": "javascript", "/static/style.css": "text/css"}
	for path, kind := range types {
		response, _ := h.get(path)
		if response.StatusCode != 200 || !strings.Contains(response.Header.Get("Content-Type"), kind) {
			t.Errorf("%s: %d %q", path, response.StatusCode, response.Header.Get("Content-Type"))
		}
		if response.Header.Get("Content-Security-Policy") != "" {
			t.Errorf("%s: a policy on a script or stylesheet", path)
		}
	}
	for _, path := range []string{"/static/web.go", "/static/index.htm", "/static/../web.go"} {
		response, body := h.get(path)
		if response.StatusCode == 200 {
			t.Errorf("%s served: %s", path, body)
		}
	}
	etag := response.Header.Get("ETag")
	again, _ := h.do(http.MethodGet, "/", nil, http.Header{"If-None-Match": {etag}})
	if etag == "" || again.StatusCode != http.StatusNotModified {
		t.Errorf("revalidation: ETag %q, status %d", etag, again.StatusCode)
	}
}
