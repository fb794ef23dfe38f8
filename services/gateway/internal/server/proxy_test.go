package server

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// seen is what an upstream received.
type seen struct {
	Method, Path, RawPath, Query, Host, Body string
	Header                                   http.Header
}

func recordingUpstream(t *testing.T, name string, into chan<- seen) string {
	t.Helper()
	return upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		into <- seen{r.Method, r.URL.Path, r.URL.EscapedPath(), r.URL.RawQuery, r.Host, string(body), r.Header.Clone()}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"from": name, "path": r.URL.EscapedPath()})
	}).URL
}

func TestEachUpstreamGetsTheRestOfThePathAndTheQuery(t *testing.T) {
	calls := make(chan seen, 10)
	books := recordingUpstream(t, "books", calls)
	shop := recordingUpstream(t, "shop", calls)
	chat := recordingUpstream(t, "chat", calls)
	h := start(t, "DEPENDENCIES__BOOKS__BASE_URL="+books, "DEPENDENCIES__SHOP__BASE_URL="+shop,
		"DEPENDENCIES__CHAT__BASE_URL="+chat+"/")
	cases := []struct{ method, path, from, upstreamPath, query string }{
		{"GET", "/api/books/books?author=Le%20Guin&page=2", "books", "/books", "author=Le%20Guin&page=2"},
		{"GET", "/api/books/books/42", "books", "/books/42", ""},
		{"POST", "/api/shop/orders", "shop", "/orders", ""},
		{"GET", "/api/chat/rooms/book-1/messages?limit=5", "chat", "/rooms/book-1/messages", "limit=5"},
		{"GET", "/api/books/a%2Fb/c%20d", "books", "/a%2Fb/c%20d", ""},
		{"GET", "/api/books", "books", "/", ""},
		{"DELETE", "/api/books/books/7/reservations/o-1", "books", "/books/7/reservations/o-1", ""},
	}
	for _, c := range cases {
		response, body := h.do(c.method, c.path, strings.NewReader("{}"), http.Header{"Content-Type": {"application/json"}})
		if response.StatusCode != http.StatusOK {
			t.Fatalf("%s %s: %d %s", c.method, c.path, response.StatusCode, body)
		}
		got := <-calls
		if got.Method != c.method || got.RawPath != c.upstreamPath || got.Query != c.query {
			t.Errorf("%s %s reached %s %s?%s, want %s?%s", c.method, c.path, got.Method, got.RawPath,
				got.Query, c.upstreamPath, c.query)
		}
		var answer map[string]string
		_ = json.Unmarshal(body, &answer)
		if answer["from"] != c.from {
			t.Errorf("%s went to %s, want %s", c.path, answer["from"], c.from)
		}
		if got.Body != "{}" {
			t.Errorf("%s: body %q not passed on", c.path, got.Body)
		}
	}
}

func TestUpstreamAnswersPassThroughWhateverTheirStatus(t *testing.T) {
	books := upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.Header().Set("Location", "/books/9")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"title":"Not Found","detail":"no book 9"}`))
	})
	h := start(t, "DEPENDENCIES__BOOKS__BASE_URL="+books.URL)
	response, body := h.get("/api/books/books/9")
	if response.StatusCode != 404 || string(body) != `{"title":"Not Found","detail":"no book 9"}` ||
		response.Header.Get("Location") != "/books/9" {
		t.Fatalf("%d %s %v", response.StatusCode, body, response.Header)
	}
}

func TestUnknownPathsAreProblemsLabelledNotFound(t *testing.T) {
	h := start(t)
	for _, path := range []string{"/api/reviews/1", "/nothing/here", "/apibooks"} {
		response, body := h.get(path)
		decodeProblem(t, response, body, http.StatusNotFound)
	}
	response, body := h.do(http.MethodPost, LivePath, nil, nil)
	decodeProblem(t, response, body, http.StatusMethodNotAllowed)
	if response.Header.Get("Allow") != "GET, HEAD" {
		t.Fatalf("Allow %q", response.Header.Get("Allow"))
	}
}

func TestABodyOverTheLimitIs413(t *testing.T) {
	calls := make(chan seen, 1)
	books := recordingUpstream(t, "books", calls)
	h := start(t, "DEPENDENCIES__BOOKS__BASE_URL="+books, "HTTP__MAX_BODY_BYTES=10")
	response, body := h.do(http.MethodPost, "/api/books/books", strings.NewReader(strings.Repeat("x", 11)), nil)
	decodeProblem(t, response, body, http.StatusRequestEntityTooLarge)
	if len(calls) != 0 {
		t.Fatal("the upstream was called")
	}
}
