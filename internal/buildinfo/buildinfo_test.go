package buildinfo

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

func TestResolve(t *testing.T) {
	stamped := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "github.com/auditns/auditns", Version: "v0.0.0-20261202051422-d9eec1a1b2c3+dirty"},
		Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "d9eec1a1b2c3d4e5f60718293a4b5c6d7e8f9012"},
			{Key: "vcs.time", Value: "2026-12-02T05:14:22Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	for _, tc := range []struct {
		name                  string
		bi                    *debug.BuildInfo
		version, commit, date string
		want                  Info
		line                  string
	}{
		{"stamped", stamped, "", "", "",
			Info{"v0.0.0-20261202051422-d9eec1a1b2c3+dirty", "d9eec1a1b2c3d4e5f60718293a4b5c6d7e8f9012", "2026-12-02T05:14:22Z", true, "go1.26.8"},
			"auditns v0.0.0-20261202051422-d9eec1a1b2c3+dirty (commit d9eec1a1b2c3+dirty, 2026-12-02T05:14:22Z) go1.26.8"},
		{"ldflags win", stamped, "v1.2.3", "0123456789abcdef", "2026-12-01T00:00:00Z",
			Info{"v1.2.3", "0123456789abcdef", "2026-12-01T00:00:00Z", false, "go1.26.8"},
			"auditns v1.2.3 (commit 0123456789ab, 2026-12-01T00:00:00Z) go1.26.8"},
		{"nothing known", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}, "", "", "",
			Info{"dev", "unknown", "", false, "go1.26.8"},
			"auditns dev (commit unknown) go1.26.8"},
	} {
		got := resolve(tc.bi, tc.version, tc.commit, tc.date)
		if got != tc.want {
			t.Errorf("%s: resolve = %+v, want %+v", tc.name, got, tc.want)
		}
		if !strings.HasPrefix(got.String(), tc.line+" ") {
			t.Errorf("%s: String() = %q, want prefix %q", tc.name, got.String(), tc.line)
		}
	}
}

// A binary built in a git clone carries the clone's HEAD, with vcs stamping
// asked for on the command line whatever GOFLAGS says; -ldflags override it.
func TestStampedBinaryCarriesHead(t *testing.T) {
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("not in a git checkout: %v", err)
	}
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "auditns")
	// The go command stamps only from a .git directory, not from the .git
	// file of a `git worktree`: there the Makefile's -ldflags carry the commit.
	if fi, err := os.Stat(filepath.Join(strings.TrimSpace(string(top)), ".git")); err != nil || !fi.IsDir() {
		t.Logf("%s/.git is not a directory (a git worktree): stamping not checked", strings.TrimSpace(string(top)))
		checkLdflags(t, bin)
		return
	}
	build := exec.Command("go", "build", "-buildvcs=true", "-o", bin, "github.com/auditns/auditns/cmd/auditns")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	flag, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatalf("auditns --version: %v", err)
	}
	if string(out) != string(flag) {
		t.Fatalf("auditns version %q and auditns --version %q differ", out, flag)
	}
	if want := "(commit " + strings.TrimSpace(string(head))[:12]; !strings.Contains(string(out), want) {
		t.Fatalf("auditns version = %q, want it to contain %q", out, want)
	}

	checkLdflags(t, bin)
}

// checkLdflags builds auditns with -ldflags -X, which overrides any stamp.
func checkLdflags(t *testing.T, bin string) {
	ld := "-X github.com/auditns/auditns/internal/buildinfo.version=v9.8.7 -X github.com/auditns/auditns/internal/buildinfo.commit=feedfacefeedface"
	build := exec.Command("go", "build", "-buildvcs=false", "-ldflags", ld, "-o", bin, "github.com/auditns/auditns/cmd/auditns")
	build.Env = append(os.Environ(), "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(out), "auditns v9.8.7 (commit feedfacefeed) ") {
		t.Fatalf("auditns --version with -ldflags = %q", out)
	}
}
