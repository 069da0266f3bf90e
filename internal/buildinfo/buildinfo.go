// Package buildinfo says which meshpki this is: its version, the commit it
// was built from and the Go that built it, for --version and the
// meshpki_build_info metric.
package buildinfo

import (
	"runtime"
	"runtime/debug"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Version is set at link time for releases:
//
//	go build -ldflags "-X github.com/meshpki/meshpki/internal/buildinfo.Version=v1.2.3" ./cmd/meshpki
//
// Otherwise it is the module version Go recorded, or "devel".
var Version = ""

// Info is what a binary knows of its own build.
type Info struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`   // VCS revision, "+dirty" when modified; "unknown" outside a checkout
	GoVersion string `json:"go"`       // e.g. go1.26.8
	Platform  string `json:"platform"` // GOOS/GOARCH
}

var (
	once sync.Once
	info Info
)

// Get returns this binary's build information.
func Get() Info {
	once.Do(func() {
		info = Info{Version: Version, Commit: "unknown", GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
		bi, ok := debug.ReadBuildInfo()
		if !ok {
			if info.Version == "" {
				info.Version = "devel"
			}
			return
		}
		if info.Version == "" {
			info.Version = bi.Main.Version
			if info.Version == "" || info.Version == "(devel)" {
				info.Version = "devel"
			}
		}
		dirty := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				info.Commit = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if dirty && info.Commit != "unknown" {
			info.Commit += "+dirty"
		}
	})
	return info
}

// String is the one line --version prints.
func (i Info) String() string {
	return i.Version + " (commit " + i.Commit + ", " + i.GoVersion + ", " + i.Platform + ")"
}

// Collector is the meshpki_build_info gauge: always 1, with the build as
// labels, as Prometheus exporters conventionally publish it.
func Collector() prometheus.Collector {
	i := Get()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "meshpki_build_info",
		Help:        "Always 1; the labels say which meshpki build is running.",
		ConstLabels: prometheus.Labels{"version": i.Version, "commit": i.Commit, "goversion": i.GoVersion},
	})
	g.Set(1)
	return g
}
