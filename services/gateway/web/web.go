// Package web holds the storefront page (index.html, app.js, style.css and whatever else the
// page needs), embedded into the gateway's binary so that the page and the gateway that serves
// it are always of one version.
package web

import (
	"embed"
	"io/fs"
)

// Every file of this folder. "*" rather than a list of names, so that a new file of the page
// needs no edit here; this Go source is embedded too, and the storefront skips *.go files.
//
//go:embed *
var files embed.FS

// Files is the page's folder.
func Files() fs.FS { return files }
