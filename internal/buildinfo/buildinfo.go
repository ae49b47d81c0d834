// Package buildinfo says which build of auditns is running: its version,
// the commit it was built from and when that commit was made, and the Go
// release that compiled it.
//
// The go command stamps the module version and the VCS revision into every
// binary built inside a git checkout (debug.ReadBuildInfo); a build made
// without the repository at hand (a container image from a source tarball,
// or GOFLAGS=-buildvcs=false) sets them with the linker instead:
//
//	go build -ldflags "-X github.com/auditns/auditns/internal/buildinfo.version=v1.2.3
//	  -X github.com/auditns/auditns/internal/buildinfo.commit=$(git rev-parse HEAD)
//	  -X github.com/auditns/auditns/internal/buildinfo.date=2026-12-02T05:00:00Z" ./cmd/auditns
//
// A value set with -ldflags wins over the stamped one.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Set with -ldflags -X; "" = take it from the Go build info.
var (
	version string
	commit  string
	date    string
)

// Info describes one build.
type Info struct {
	Version   string // module version (v1.2.3, or a pseudo-version), "dev" when unknown
	Commit    string // full VCS revision, "unknown" when unknown
	Date      string // commit time (RFC 3339), "" when unknown
	Modified  bool   // built from a work tree with uncommitted changes
	GoVersion string // runtime.Version() of the compiler
}

// Get returns the running binary's build information.
func Get() Info {
	bi, _ := debug.ReadBuildInfo()
	return resolve(bi, version, commit, date)
}

// resolve merges the linker's values over the stamped build info (bi may be
// nil: a binary built without module support).
func resolve(bi *debug.BuildInfo, version, commit, date string) Info {
	in := Info{Version: version, Commit: commit, Date: date, GoVersion: runtime.Version()}
	if bi != nil {
		if in.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			in.Version = bi.Main.Version
		}
		if bi.GoVersion != "" {
			in.GoVersion = bi.GoVersion
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if in.Commit == "" {
					in.Commit = s.Value
				}
			case "vcs.time":
				if in.Date == "" {
					in.Date = s.Value
				}
			case "vcs.modified":
				in.Modified = s.Value == "true" && commit == ""
			}
		}
	}
	if in.Version == "" {
		in.Version = "dev"
	}
	if in.Commit == "" {
		in.Commit = "unknown"
	}
	return in
}

// ShortCommit is the first 12 characters of the commit, "+dirty" appended
// for a build from a modified work tree.
func (in Info) ShortCommit() string {
	c := in.Commit
	if len(c) > 12 && c != "unknown" {
		c = c[:12]
	}
	if in.Modified {
		c += "+dirty"
	}
	return c
}

// String is the one line `auditns version` and `auditns --version` print:
//
//	auditns v1.2.3 (commit 0123456789ab, 2026-12-02T05:00:00Z) go1.26.8 linux/amd64
func (in Info) String() string {
	when := ""
	if in.Date != "" {
		when = ", " + in.Date
	}
	return fmt.Sprintf("auditns %s (commit %s%s) %s %s/%s", in.Version, in.ShortCommit(), when, in.GoVersion, runtime.GOOS, runtime.GOARCH)
}
