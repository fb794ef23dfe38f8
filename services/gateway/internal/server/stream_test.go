package server

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// eventUpstream is a chat stand-in: every follower gets "hello" at once, then "news" when
// release is closed, and the stream stays open until the follower leaves.
func eventUpstream(t *testing.T, release <-chan struct{}, followers *counter) string {
	t.Helper()
	return upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/rooms/book-1/events" {
			http.NotFound(w, r)
			return
		}
		followers.next()
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-store")
		flusher := w.(http.Flusher)
		fmt.Fprintf(w, "id: 1\ndata: hello %s\n\n", r.Header.Get("Last-Event-Id"))
		flusher.Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		fmt.Fprint(w, "id: 2\ndata: news\n\n")
		flusher.Flush()
		<-r.Context().Done()
	}).URL
}

// follow opens the stream and returns a reader of its data lines.
func follow(ctx context.Context, client *http.Client, url string) (*http.Response, *bufio.Reader, error) {
	request, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	request.Header.Set("Accept", "text/event-stream")
	request.Header.Set("Last-Event-ID", "0")
	response, err := client.Do(request)
	if err != nil {
		return nil, nil, err
	}
	return response, bufio.NewReader(response.Body), nil
}

// nextData is the next "data:" line of the stream.
func nextData(reader *bufio.Reader) (string, error) {
	for {
		line, err := reader.ReadString('\n')
		if err != nil {
			return "", err
		}
		if strings.HasPrefix(line, "data: ") {
			return strings.TrimSpace(strings.TrimPrefix(line, "data: ")), nil
		}
	}
}

func TestTwoHundredFollowersGetEveryEventAsItIsSent(t *testing.T) {
	const followers = 200
	release := make(chan struct{})
	count := &counter{}
	chat := eventUpstream(t, release, count)
	h := start(t, "DEPENDENCIES__CHAT__BASE_URL="+chat)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: followers}}
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	url := h.server.URL + "/api/chat/rooms/book-1/events"
	hello := make(chan error, followers)
	news := make(chan error, followers)
	ended := make(chan error, followers)
	var wg sync.WaitGroup
	for range followers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			response, reader, err := follow(ctx, client, url)
			if err != nil {
				hello <- err
				return
			}
			defer response.Body.Close()
			if got := response.Header.Get("Content-Type"); got != "text/event-stream" {
				hello <- fmt.Errorf("content type %q", got)
				return
			}
			data, err := nextData(reader)
			if err == nil && data != "hello 0" {
				err = fmt.Errorf("first event %q (Last-Event-ID not passed on?)", data)
			}
			hello <- err
			data, err = nextData(reader)
			if err == nil && data != "news" {
				err = fmt.Errorf("second event %q", data)
			}
			news <- err
			_, err = nextData(reader) // the stream ends when the gateway stops its streams
			ended <- err
		}()
	}
	// Every follower has its first event while the upstream holds every stream open: nothing
	// waited for a buffer to fill or the stream to end.
	for range followers {
		if err := <-hello; err != nil {
			t.Fatal(err)
		}
	}
	if count.get() != followers {
		t.Fatalf("%d streams reached the upstream, want %d", count.get(), followers)
	}
	close(release)
	for range followers {
		if err := <-news; err != nil {
			t.Fatal(err)
		}
	}
	h.gateway.StopStreams() // as when the server stops accepting at shutdown
	for range followers {
		if err := <-ended; err == nil {
			t.Fatal("a stream went on after the gateway stopped its streams")
		}
	}
	wg.Wait()
}

func TestAnEventStreamHasNoReadTimeout(t *testing.T) {
	release := make(chan struct{})
	chat := eventUpstream(t, release, &counter{})
	h := start(t, "DEPENDENCIES__CHAT__BASE_URL="+chat,
		"DEPENDENCIES__CHAT__READ_TIMEOUT_SECONDS=0.1", "DEPENDENCIES__CHAT__DEADLINE_SECONDS=0.2")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	response, reader, err := follow(ctx, h.server.Client(), h.server.URL+"/api/chat/rooms/book-1/events")
	if err != nil {
		t.Fatal(err)
	}
	defer response.Body.Close()
	if _, err := nextData(reader); err != nil {
		t.Fatal(err)
	}
	time.Sleep(400 * time.Millisecond) // past the read timeout and the deadline
	close(release)
	if data, err := nextData(reader); err != nil || data != "news" {
		t.Fatalf("after a quiet spell: %q, %v", data, err)
	}
	// Other chat routes keep the read timeout.
	quiet := upstreamServer(t, func(w http.ResponseWriter, r *http.Request) { time.Sleep(300 * time.Millisecond) })
	h2 := start(t, "DEPENDENCIES__CHAT__BASE_URL="+quiet.URL, "DEPENDENCIES__CHAT__READ_TIMEOUT_SECONDS=0.1",
		"DEPENDENCIES__CHAT__RETRY__MAX_ATTEMPTS=1")
	answer, body := h2.get("/api/chat/rooms")
	decodeProblem(t, answer, body, http.StatusGatewayTimeout)
}
