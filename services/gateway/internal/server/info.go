package server

import (
	"runtime"
	"runtime/debug"
	"time"

	"github.com/bookshop/gateway/internal/config"
)

// Commit may be set at build time: -ldflags "-X github.com/bookshop/gateway/internal/server.Commit=...".
var Commit = ""

// Info is what /info and the service_info metric say about this process: chassis/info.py's
// keys, with go_version in place of python_version (chassis_version does not apply).
type Info struct {
	Service     string `json:"service"`
	Version     string `json:"version"`
	Commit      string `json:"commit"`
	Environment string `json:"environment"`
	StartedAt   string `json:"started_at"`
	GoVersion   string `json:"go_version"`
}

func collectInfo(settings *config.Settings, getenv func(string) string) Info {
	return Info{
		Service:     settings.Service.Name,
		Version:     settings.Service.Version,
		Commit:      gitCommit(getenv),
		Environment: settings.Environment,
		StartedAt:   time.Now().UTC().Format("2006-01-02T15:04:05Z"),
		GoVersion:   runtime.Version(),
	}
}

// gitCommit: GIT_COMMIT when the image build set it (as for the Python services), else the
// one linked in, else the one the Go toolchain stamped, else "unknown".
func gitCommit(getenv func(string) string) string {
	if commit := getenv("GIT_COMMIT"); commit != "" {
		return commit
	}
	if Commit != "" {
		return Commit
	}
	if build, ok := debug.ReadBuildInfo(); ok {
		for _, setting := range build.Settings {
			if setting.Key == "vcs.revision" && setting.Value != "" {
				return setting.Value[:min(12, len(setting.Value))]
			}
		}
	}
	return "unknown"
}
