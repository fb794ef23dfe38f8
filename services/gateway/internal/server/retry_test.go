package server

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// flaky answers status for its first failures calls, then 200.
func flaky(t *testing.T, failures, status int, retryAfter string, calls *counter, bodies chan<- string) string {
	t.Helper()
	return upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if bodies != nil {
			bodies <- string(body)
		}
		if calls.next() <= failures {
			if retryAfter != "" {
				w.Header().Set("Retry-After", retryAfter)
			}
			w.WriteHeader(status)
			return
		}
		_, _ = w.Write([]byte("ok"))
	}).URL
}

func TestIdempotentRequestsAreRetriedOn502503504(t *testing.T) {
	for _, status := range []int{502, 503, 504} {
		calls := &counter{}
		h := start(t, "DEPENDENCIES__BOOKS__BASE_URL="+flaky(t, 2, status, "", calls, nil))
		response, body := h.get("/api/books/books")
		if response.StatusCode != 200 || string(body) != "ok" || calls.get() != 3 {
			t.Fatalf("%d twice then 200: answered %d after %d calls", status, response.StatusCode, calls.get())
		}
		waits := h.waits.all()
		if len(waits) != 2 || waits[0] > 50*time.Millisecond || waits[1] > 100*time.Millisecond {
			t.Fatalf("waits %v, want full jitter under 50 ms then 100 ms", waits)
		}
	}
}

func TestAtMostThreeAttemptsThenTheUpstreamsAnswer(t *testing.T) {
	calls := &counter{}
	h := start(t, "DEPENDENCIES__BOOKS__BASE_URL="+flaky(t, 100, 503, "", calls, nil))
	response, _ := h.get("/api/books/books")
	if response.StatusCode != 503 || calls.get() != 3 {
		t.Fatalf("answered %d after %d calls, want the upstream's 503 after 3", response.StatusCode, calls.get())
	}
}

func TestOtherFailuresAreNotRetried(t *testing.T) {
	for _, status := range []int{500, 501, 429, 404} {
		calls := &counter{}
		h := start(t, "DEPENDENCIES__BOOKS__BASE_URL="+flaky(t, 100, status, "", calls, nil))
		response, _ := h.get("/api/books/books")
		if response.StatusCode != status || calls.get() != 1 {
			t.Fatalf("%d: %d calls", status, calls.get())
		}
	}
}

func TestPostIsRetriedOnlyWithAnIdempotencyKey(t *testing.T) {
	calls := &counter{}
	h := start(t, "DEPENDENCIES__SHOP__BASE_URL="+flaky(t, 100, 503, "", calls, nil))
	h.do(http.MethodPost, "/api/shop/orders", strings.NewReader(`{"items":[]}`), nil)
	if calls.get() != 1 {
		t.Fatalf("a POST without a key was sent %d times", calls.get())
	}
	calls2 := &counter{}
	bodies := make(chan string, 3)
	h2 := start(t, "DEPENDENCIES__SHOP__BASE_URL="+flaky(t, 2, 503, "", calls2, bodies))
	response, _ := h2.do(http.MethodPost, "/api/shop/orders", strings.NewReader(`{"items":[1]}`),
		http.Header{"Idempotency-Key": {"order-7"}})
	if response.StatusCode != 200 || calls2.get() != 3 {
		t.Fatalf("a POST with a key: %d after %d calls", response.StatusCode, calls2.get())
	}
	for range 3 {
		if body := <-bodies; body != `{"items":[1]}` {
			t.Fatalf("a retry sent body %q", body)
		}
	}
	calls3 := &counter{}
	h3 := start(t, "DEPENDENCIES__SHOP__BASE_URL="+flaky(t, 100, 503, "", calls3, nil))
	h3.do(http.MethodPatch, "/api/shop/orders/1", strings.NewReader(`{}`), nil)
	if calls3.get() != 1 {
		t.Fatalf("a PATCH without a key was sent %d times", calls3.get())
	}
}

func TestRetryAfterIsHonouredWithinTheDeadline(t *testing.T) {
	calls := &counter{}
	h := start(t, "DEPENDENCIES__BOOKS__BASE_URL="+flaky(t, 1, 503, "2", calls, nil))
	response, _ := h.get("/api/books/books")
	if response.StatusCode != 200 || calls.get() != 2 {
		t.Fatalf("%d after %d calls", response.StatusCode, calls.get())
	}
	if waits := h.waits.all(); len(waits) != 1 || waits[0] != 2*time.Second {
		t.Fatalf("waits %v, want the 2 s Retry-After asked for", waits)
	}
	// Asking for more than the 5 s deadline leaves: the upstream's answer goes back as it is.
	calls2 := &counter{}
	h2 := start(t, "DEPENDENCIES__BOOKS__BASE_URL="+flaky(t, 1, 503, "30", calls2, nil))
	response, _ = h2.get("/api/books/books")
	if response.StatusCode != 503 || response.Header.Get("Retry-After") != "30" || calls2.get() != 1 {
		t.Fatalf("%d (Retry-After %q) after %d calls", response.StatusCode, response.Header.Get("Retry-After"), calls2.get())
	}
}

func TestConnectionErrorsAreRetriedThenA502NamingTheUpstream(t *testing.T) {
	h := start(t) // books refuses connections
	response, body := h.get("/api/books/books")
	problem := decodeProblem(t, response, body, http.StatusBadGateway)
	if problem["upstream"] != "books" || !strings.Contains(problem["detail"].(string), "books") {
		t.Fatalf("problem %v", problem)
	}
	if len(h.waits.all()) != 2 {
		t.Fatalf("%d retries, want 2", len(h.waits.all()))
	}
}

func TestTimeoutsAre504NamingTheUpstream(t *testing.T) {
	slow := upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(2 * time.Second):
		case <-r.Context().Done():
		}
	})
	// The read timeout, on every attempt.
	h := start(t, "DEPENDENCIES__BOOKS__BASE_URL="+slow.URL, "DEPENDENCIES__BOOKS__READ_TIMEOUT_SECONDS=0.1")
	started := time.Now()
	response, body := h.get("/api/books/books")
	problem := decodeProblem(t, response, body, http.StatusGatewayTimeout)
	if problem["upstream"] != "books" || problem["detail"] != "books timed out (ReadTimeout)" {
		t.Fatalf("problem %v", problem)
	}
	if elapsed := time.Since(started); elapsed > time.Second {
		t.Fatalf("3 attempts of 0.1 s took %s", elapsed)
	}
	// The overall deadline, shorter than one read timeout.
	h2 := start(t, "DEPENDENCIES__SHOP__BASE_URL="+slow.URL, "DEPENDENCIES__SHOP__DEADLINE_SECONDS=0.2")
	started = time.Now()
	response, body = h2.get("/api/shop/orders")
	decodeProblem(t, response, body, http.StatusGatewayTimeout)
	if elapsed := time.Since(started); elapsed > time.Second {
		t.Fatalf("a 0.2 s deadline answered after %s", elapsed)
	}
}
