// The bookshop's gateway: the storefront page and the front door to the books, shop and chat
// services (docs/design.md). See README.md.
package main

import (
	"os"

	"github.com/bookshop/gateway/internal/cli"
	"github.com/bookshop/gateway/web"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Environ(), os.Stdout, os.Stderr, web.Files()))
}
