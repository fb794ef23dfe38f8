package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bookshop/gateway/web"
)

// The test binary doubles as the gateway: run with this variable set, it is `gateway <args>`,
// so a test can send a real SIGTERM to a real process and read its exit status.
const runAsGateway = "GATEWAY_TEST_RUN_AS_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runAsGateway) == "1" {
		os.Exit(Main(os.Args[1:], os.Environ(), os.Stdout, os.Stderr, web.Files()))
	}
	os.Exit(m.Run())
}

func TestABadValueStopsStartUpNamingTheKey(t *testing.T) {
	var stdout, stderr bytes.Buffer
	status := Main([]string{"serve"}, []string{"HTTP__PORT=eighty", "DEPENDENCIES__BOOKS__READ_TIMEOUT_SECONDS=-2"},
		&stdout, &stderr, web.Files())
	message := stderr.String()
	if status != 2 || !strings.Contains(message, "http.port (env HTTP__PORT)") ||
		!strings.Contains(message, "dependencies.books.read_timeout_seconds") {
		t.Fatalf("status %d, stderr %q", status, message)
	}
	if Main([]string{"serve", "--port", "99999"}, nil, &stdout, &stderr, web.Files()) != 2 {
		t.Fatal("--port 99999 accepted")
	}
}

func TestVersionAndUsage(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if Main([]string{"version"}, []string{"SERVICE__VERSION=2.0.1"}, &stdout, &stderr, nil) != 0 ||
		stdout.String() != "gateway 2.0.1\n" {
		t.Fatalf("version: %q", stdout.String())
	}
	if Main(nil, nil, &stdout, &stderr, nil) != 2 || Main([]string{"migrate"}, nil, &stdout, &stderr, nil) != 2 {
		t.Fatal("a missing or unknown command is a usage error")
	}
}

func TestTheProcessServesThePageAndExitsZeroOnSIGTERM(t *testing.T) {
	dead := func() string {
		listener, _ := net.Listen("tcp", "127.0.0.1:0")
		defer listener.Close()
		return "http://" + listener.Addr().String()
	}()
	command := exec.Command(os.Args[0], "serve", "--host", "127.0.0.1", "--port", "0")
	command.Env = append(os.Environ(), runAsGateway+"=1", "OTEL_TRACES_EXPORTER=none",
		"SHUTDOWN__DRAIN_SECONDS=1.5", "DEPENDENCIES__BOOKS__BASE_URL="+dead,
		"DEPENDENCIES__SHOP__BASE_URL="+dead, "DEPENDENCIES__CHAT__BASE_URL="+dead)
	stdout, err := command.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	command.Stderr = &stderr
	if err := command.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = command.Process.Kill() })
	lines := make(chan map[string]any, 100)
	go func() {
		defer close(lines)
		scanner := bufio.NewScanner(stdout)
		for scanner.Scan() {
			var line map[string]any
			if err := json.Unmarshal(scanner.Bytes(), &line); err != nil {
				line = map[string]any{"not_json": scanner.Text()}
			}
			lines <- line
		}
	}()
	var address string
	select {
	case line := <-lines:
		address, _ = line["address"].(string)
		if line["message"] != "listening" || address == "" {
			t.Fatalf("first line %v (stderr %s)", line, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the gateway did not start: %s", stderr.String())
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	page, err := client.Get("http://" + address + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(page.Body)
	page.Body.Close()
	if page.StatusCode != 200 || !strings.HasPrefix(page.Header.Get("Content-Type"), "text/html") ||
		!strings.Contains(page.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'") || len(body) == 0 {
		t.Fatalf("the embedded page: %d %v", page.StatusCode, page.Header)
	}

	if err := command.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Second); ; time.Sleep(20 * time.Millisecond) { // inside the drain
		ready, err := client.Get("http://" + address + "/health/ready")
		if err != nil {
			t.Fatalf("not serving during the drain: %v", err)
		}
		ready.Body.Close()
		if ready.StatusCode == 503 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readiness after SIGTERM: %d, want 503", ready.StatusCode)
		}
	}
	exited := make(chan error, 1)
	go func() { exited <- command.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit: %v (stderr %s)", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the gateway did not exit")
	}
	var messages []string
	for line := range lines {
		if line["not_json"] != nil {
			t.Errorf("a line that is not JSON: %v", line["not_json"])
		}
		if message, ok := line["message"].(string); ok {
			messages = append(messages, message)
		}
	}
	if len(messages) == 0 || messages[len(messages)-1] != "shutdown complete" {
		t.Fatalf("last words: %v", messages)
	}
}
