package server

import (
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// scripted answers each call with the status status() gives at that moment.
func scripted(t *testing.T, calls *counter, status func(call int) int) string {
	t.Helper()
	return upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status(calls.next()))
	}).URL
}

func (h *harness) breakerCheck(name string) (int, string, map[string]any) {
	h.t.Helper()
	status, readiness := h.readiness()
	check, _ := readiness["checks"].(map[string]any)[name].(map[string]any)
	return status, readiness["status"].(string), check
}

func TestTenFailuresOpenTheBreakerThenA503NamingTheUpstream(t *testing.T) {
	calls := &counter{}
	books := scripted(t, calls, func(int) int { return http.StatusInternalServerError }) // never retried
	h := start(t, "DEPENDENCIES__BOOKS__BASE_URL="+books)
	for i := 1; i <= 9; i++ {
		if response, _ := h.get("/api/books/books"); response.StatusCode != 500 {
			t.Fatalf("call %d: %d", i, response.StatusCode)
		}
	}
	if status, overall, check := h.breakerCheck("books"); status != 200 || overall != "UP" || check["breaker"] != "closed" {
		t.Fatalf("after 9 failures (below minimum_calls=10): %d %s %v", status, overall, check)
	}
	h.get("/api/books/books") // the 10th failure of 10 calls
	response, body := h.get("/api/books/books")
	problem := decodeProblem(t, response, body, http.StatusServiceUnavailable)
	if problem["detail"] != "books is unavailable: circuit open" || problem["upstream"] != "books" {
		t.Fatalf("problem %v", problem)
	}
	if retryAfter, err := strconv.Atoi(response.Header.Get("Retry-After")); err != nil || retryAfter < 1 || retryAfter > 10 {
		t.Fatalf("Retry-After %q", response.Header.Get("Retry-After"))
	}
	if calls.get() != 10 {
		t.Fatalf("the upstream was called %d times; an open breaker must not call it", calls.get())
	}
	if len(h.waits.all()) != 0 {
		t.Fatalf("a rejected call was retried: %v", h.waits.all())
	}
	status, overall, check := h.breakerCheck("books")
	if status != 200 || overall != "DEGRADED" || check["status"] != "DOWN" || check["breaker"] != "open" ||
		check["critical"] != false || check["retry_after_seconds"] == nil {
		t.Fatalf("readiness while books' breaker is open: %d %s %v", status, overall, check)
	}
	_, _, shop := h.breakerCheck("shop")
	if shop["status"] != "UP" || shop["breaker"] != "closed" {
		t.Fatalf("shop's check: %v", shop)
	}
	lines := h.logLines()
	found := false
	for _, line := range lines {
		if line["message"] == "circuit breaker state changed" && line["peer_service"] == "books" &&
			line["state"] == "open" && line["previous_state"] == "closed" && line["level"] == "warning" &&
			line["logger"] == "chassis.client" {
			found = true
		}
	}
	if !found {
		t.Fatal("the state change was not logged")
	}
}

func TestHalfTheCallsFailingOpensIt(t *testing.T) {
	calls := &counter{}
	books := scripted(t, calls, func(call int) int { return []int{200, 500}[call%2] })
	h := start(t, "DEPENDENCIES__BOOKS__BASE_URL="+books)
	for range 10 {
		h.get("/api/books/books")
	}
	if _, _, check := h.breakerCheck("books"); check["breaker"] != "open" {
		t.Fatalf("5 failures of 10: %v", check)
	}
}

func TestClientErrorsAreNotFailures(t *testing.T) {
	calls := &counter{}
	books := scripted(t, calls, func(int) int { return http.StatusNotFound })
	h := start(t, "DEPENDENCIES__BOOKS__BASE_URL="+books)
	for range 25 {
		h.get("/api/books/books/404")
	}
	if _, _, check := h.breakerCheck("books"); check["breaker"] != "closed" {
		t.Fatalf("25 404s: %v", check)
	}
}

func TestSlowCallsOpenItAndConcurrentCallsAreNotSerialised(t *testing.T) {
	slow := upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(400 * time.Millisecond) // slow: over 10% of the 3 s read timeout, far below it
	})
	h := start(t, "DEPENDENCIES__BOOKS__BASE_URL="+slow.URL, "DEPENDENCIES__BOOKS__READ_TIMEOUT_SECONDS=3",
		"DEPENDENCIES__BOOKS__BREAKER__SLOW_CALL_RATIO=0.1")
	started := time.Now()
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if response, _ := h.get("/api/books/books"); response.StatusCode != 200 {
				t.Errorf("slow call: %d", response.StatusCode)
			}
		}()
	}
	wg.Wait()
	if elapsed := time.Since(started); elapsed > 3*time.Second {
		t.Fatalf("10 concurrent calls of 0.4 s took %s: the breaker serialised them", elapsed)
	}
	if _, _, check := h.breakerCheck("books"); check["breaker"] != "open" {
		t.Fatalf("10 slow calls of 10 (over 0.3 s): %v", check)
	}
}

func TestHalfOpenAdmitsThreeTrialsAndSuccessCloses(t *testing.T) {
	var healthy atomic.Bool
	hold := make(chan struct{})
	calls := &counter{}
	books := upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
		calls.next()
		if !healthy.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		select {
		case <-hold:
		case <-r.Context().Done():
		}
	})
	h := start(t, "DEPENDENCIES__BOOKS__BASE_URL="+books.URL, "DEPENDENCIES__BOOKS__BREAKER__OPEN_SECONDS=0.3")
	for range 10 {
		h.get("/api/books/books")
	}
	time.Sleep(350 * time.Millisecond)
	if status, overall, check := h.breakerCheck("books"); status != 200 || overall != "DEGRADED" || check["breaker"] != "half_open" {
		t.Fatalf("after open_seconds: %d %s %v", status, overall, check)
	}
	healthy.Store(true)
	answers := make(chan int, 3)
	for range 3 {
		go func() {
			response, _ := h.get("/api/books/books")
			answers <- response.StatusCode
		}()
	}
	for waited := time.Now(); calls.get() < 13; time.Sleep(5 * time.Millisecond) { // the 3 trials are at the upstream
		if time.Since(waited) > 5*time.Second {
			t.Fatalf("%d calls reached the upstream, want 13", calls.get())
		}
	}
	response, body := h.get("/api/books/books")
	decodeProblem(t, response, body, http.StatusServiceUnavailable) // a 4th call while 3 trials run
	close(hold)
	for range 3 {
		if status := <-answers; status != 200 {
			t.Fatalf("trial answered %d", status)
		}
	}
	if _, overall, check := h.breakerCheck("books"); overall != "UP" || check["breaker"] != "closed" {
		t.Fatalf("after 3 successful trials: %s %v", overall, check)
	}
}

func TestAFailedTrialReopensIt(t *testing.T) {
	calls := &counter{}
	books := scripted(t, calls, func(int) int { return http.StatusInternalServerError })
	h := start(t, "DEPENDENCIES__BOOKS__BASE_URL="+books, "DEPENDENCIES__BOOKS__BREAKER__OPEN_SECONDS=0.3")
	for range 10 {
		h.get("/api/books/books")
	}
	time.Sleep(350 * time.Millisecond)
	if response, _ := h.get("/api/books/books"); response.StatusCode != 500 {
		t.Fatalf("the trial call: %d", response.StatusCode)
	}
	if _, _, check := h.breakerCheck("books"); check["breaker"] != "open" {
		t.Fatalf("after a failed trial: %v", check)
	}
	response, body := h.get("/api/books/books")
	decodeProblem(t, response, body, http.StatusServiceUnavailable)
	if calls.get() != 11 {
		t.Fatalf("%d upstream calls, want 11", calls.get())
	}
}

func TestACriticalUpstreamsOpenBreakerIsDown(t *testing.T) {
	calls := &counter{}
	books := scripted(t, calls, func(int) int { return http.StatusBadGateway })
	h := start(t, "DEPENDENCIES__BOOKS__BASE_URL="+books, "DEPENDENCIES__BOOKS__CRITICAL=true",
		"DEPENDENCIES__BOOKS__RETRY__MAX_ATTEMPTS=1")
	for range 10 {
		h.get("/api/books/books")
	}
	if status, overall, _ := h.breakerCheck("books"); status != 503 || overall != "DOWN" {
		t.Fatalf("critical upstream open: %d %s", status, overall)
	}
}
