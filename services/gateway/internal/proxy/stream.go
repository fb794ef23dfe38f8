package proxy

import (
	"net/http"
	"time"

	"github.com/bookshop/gateway/internal/upstream"
)

// pipe passes an event stream on as it comes: every read from the upstream is written and
// flushed at once, so an event reaches the browser when the upstream sends it, not when some
// buffer fills. It ends when the upstream ends the stream, the client goes away, or the
// server stops (the call's context is cancelled, failing the read).
func pipe(w http.ResponseWriter, response *upstream.Response) {
	control := http.NewResponseController(w)
	// A stream lives as long as it likes: no write deadline (there is none by default; this
	// keeps it so if the server ever gets one).
	_ = control.SetWriteDeadline(time.Time{})
	w.Header().Del("Content-Length")
	w.Header().Set("X-Accel-Buffering", "no") // and no proxy in front of the gateway buffers it
	w.WriteHeader(response.Status)
	if control.Flush() != nil {
		return
	}
	buffer := make([]byte, 4096)
	for {
		n, err := response.Stream.Read(buffer)
		if n > 0 {
			if _, writeErr := w.Write(buffer[:n]); writeErr != nil {
				return
			}
			if control.Flush() != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
