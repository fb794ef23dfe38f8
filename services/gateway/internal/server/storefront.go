package server

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/bookshop/gateway/internal/problem"
)

// storefront serves the page's files from the embedded web/ folder: / is index.html, and
// /static/<file> any other file there. Go sources in that folder (web.go) are not served.
type storefront struct {
	files map[string]asset
}

type asset struct {
	content     []byte
	contentType string
	etag        string
}

func newStorefront(web fs.FS) (*storefront, error) {
	s := &storefront{files: map[string]asset{}}
	if web == nil {
		return s, nil
	}
	err := fs.WalkDir(web, ".", func(name string, entry fs.DirEntry, err error) error {
		if err != nil || entry.IsDir() || strings.HasSuffix(name, ".go") {
			return err
		}
		content, err := fs.ReadFile(web, name)
		if err != nil {
			return err
		}
		contentType := mime.TypeByExtension(path.Ext(name))
		if contentType == "" {
			contentType = http.DetectContentType(content)
		}
		digest := sha256.Sum256(content)
		s.files[name] = asset{
			content:     content,
			contentType: contentType,
			etag:        `"` + hex.EncodeToString(digest[:12]) + `"`,
		}
		return nil
	})
	return s, err
}

func (s *storefront) index(w http.ResponseWriter, r *http.Request) {
	s.serve(w, r, "index.html")
}

func (s *storefront) static(w http.ResponseWriter, r *http.Request) {
	s.serve(w, r, r.PathValue("file"))
}

func (s *storefront) serve(w http.ResponseWriter, r *http.Request, name string) {
	file, ok := s.files[name]
	if !ok {
		problem.Write(w, r, problem.Problem{Status: http.StatusNotFound, Detail: "no such file: " + name})
		return
	}
	header := w.Header()
	header.Set("Content-Type", file.contentType)
	header.Set("ETag", file.etag)
	// Revalidated on every load (a 304 when unchanged): a new gateway's page is seen at once.
	header.Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(file.content))
}
