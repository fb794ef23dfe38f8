package server

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bookshop/gateway/internal/config"
)

func TestShutdownTurnsReadinessDownDrainsThenFinishesWhatIsInFlight(t *testing.T) {
	slow := upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/events") {
			w.Header().Set("Content-Type", "text/event-stream")
			_, _ = w.Write([]byte("data: hello\n\n"))
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			return
		}
		time.Sleep(1500 * time.Millisecond) // still in flight when the drain ends
		_, _ = w.Write([]byte("finished"))
	})
	dead := deadAddress(t)
	environ := []string{"OTEL_TRACES_EXPORTER=none", "SHUTDOWN__DRAIN_SECONDS=0.8",
		"DEPENDENCIES__BOOKS__BASE_URL=" + slow.URL, "DEPENDENCIES__CHAT__BASE_URL=" + slow.URL,
		"DEPENDENCIES__SHOP__BASE_URL=" + dead}
	settings, err := config.Load(environ)
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	g, err := New(context.Background(), settings, Options{LogOutput: logs, Getenv: lookup(environ), Web: testPage})
	if err != nil {
		t.Fatal(err)
	}
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + listener.Addr().String()
	signals := make(chan os.Signal, 3)
	served := make(chan error, 1)
	go func() { served <- g.Serve(listener, signals) }()
	fresh := func() *http.Client { // a new connection for every request
		return &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	}
	if response, err := fresh().Get(base + ReadyPath); err != nil || response.StatusCode != 200 {
		t.Fatalf("before shutdown: %v %v", response, err)
	}

	inFlight := make(chan string, 1)
	go func() {
		response, err := fresh().Get(base + "/api/books/slow")
		if err != nil {
			inFlight <- err.Error()
			return
		}
		defer response.Body.Close()
		var body strings.Builder
		_, _ = bufio.NewReader(response.Body).WriteTo(&body)
		inFlight <- body.String()
	}()
	stream, err := fresh().Get(base + "/api/chat/rooms/book-1/events")
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	streamReader := bufio.NewReader(stream.Body)
	if line, _ := streamReader.ReadString('\n'); line != "data: hello\n" {
		t.Fatalf("stream: %q", line)
	}
	time.Sleep(100 * time.Millisecond) // the slow request is at the upstream

	signals <- syscall.SIGTERM
	deadline := time.Now().Add(500 * time.Millisecond)
	for {
		response, err := fresh().Get(base + ReadyPath)
		if err != nil {
			t.Fatal(err)
		}
		var readiness map[string]any
		_ = json.NewDecoder(response.Body).Decode(&readiness)
		response.Body.Close()
		if response.StatusCode == 503 {
			shutdown := readiness["checks"].(map[string]any)["shutdown"].(map[string]any)
			if readiness["status"] != "DOWN" || shutdown["status"] != "DOWN" || shutdown["reason"] != "shutting down" {
				t.Fatalf("readiness during shutdown: %v", readiness)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("readiness still 200 after the signal")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Still serving while draining: the load balancer needs the drain to stop routing here.
	if response, err := fresh().Get(base + LivePath); err != nil || response.StatusCode != 200 {
		t.Fatalf("during the drain: %v %v", response, err)
	}
	select {
	case err := <-served:
		t.Fatalf("Serve returned during the drain: %v", err)
	default:
	}

	if got := <-inFlight; got != "finished" {
		t.Fatalf("the request in flight: %q", got)
	}
	if rest, err := streamReader.ReadString('x'); err == nil || rest != "\n" {
		t.Fatalf("the event stream outlived the server (%q, %v)", rest, err)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	if _, err := fresh().Get(base + LivePath); err == nil {
		t.Fatal("still accepting after shutdown")
	}
	text := logs.String()
	begun := strings.Index(text, `"message":"shutdown begun"`)
	complete := strings.Index(text, `"message":"shutdown complete"`)
	if begun < 0 || complete < begun || !strings.Contains(text, `"signal":"SIGTERM"`) {
		t.Fatalf("shutdown log lines:\n%s", text)
	}
}
