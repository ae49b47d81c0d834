// Package packaging checks the files that deploy auditns: the systemd unit
// (systemd-analyze verify), docker-compose.yml (docker compose config), the
// Prometheus alert rules (promtool) and the Grafana dashboard, and that the
// capabilities they grant are the documented ones. The tools come from
// scripts/tools/build.sh (cached in .cache/tools) and Debian's systemd
// package; .ci/run installs them and sets AUDITNS_REQUIRE_TOOLS=1, so that a
// missing tool fails these tests there instead of skipping them.
package packaging

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/auditns/auditns/internal/testenv"
)

const requireToolsVar = "AUDITNS_REQUIRE_TOOLS"

// repo is the repository root, from this package's directory.
const repo = ".."

// tool finds name on PATH or as built by scripts/tools/build.sh.
func tool(t *testing.T, name, buildArg string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	dir := os.Getenv("AUDITNS_TOOLS_DIR")
	if dir == "" {
		dir = filepath.Join(repo, ".cache", "tools")
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*", name)); len(m) > 0 {
		abs, _ := filepath.Abs(m[len(m)-1])
		return abs
	}
	how := "install it"
	if buildArg != "" {
		how = "run scripts/tools/build.sh " + buildArg
	}
	testenv.Missing(t, requireToolsVar, name+" not found ("+how+")")
	return ""
}

func run(t *testing.T, dir string, env []string, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// documentedCapabilities is the capability table of docs/OPERATIONS.md
// (rows "| `CAP_X` | ... |").
func documentedCapabilities(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repo, "docs", "OPERATIONS.md"))
	if err != nil {
		t.Fatal(err)
	}
	var caps []string
	for _, m := range regexp.MustCompile("(?m)^\\| `(CAP_[A-Z_]+)` \\|").FindAllStringSubmatch(string(b), -1) {
		caps = append(caps, m[1])
	}
	if len(caps) == 0 {
		t.Fatal("docs/OPERATIONS.md has no capability table")
	}
	slices.Sort(caps)
	return caps
}

// unitSettings returns every value of key in the unit file (keys repeat).
func unitSettings(t *testing.T, unit []byte, key string) []string {
	var vals []string
	for _, line := range strings.Split(string(unit), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && strings.TrimSpace(k) == key {
			vals = append(vals, strings.TrimSpace(v))
		}
	}
	return vals
}

// The unit grants exactly the documented capabilities, in its bounding and
// ambient sets alike, and docker-compose.yml adds the same.
func TestCapabilitiesAreTheDocumentedOnes(t *testing.T) {
	want := documentedCapabilities(t)
	unit, err := os.ReadFile(filepath.Join(repo, "packaging", "systemd", "auditns.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"CapabilityBoundingSet", "AmbientCapabilities"} {
		vals := unitSettings(t, unit, key)
		if len(vals) != 1 {
			t.Fatalf("%s set %d times in the unit, want once", key, len(vals))
		}
		got := strings.Fields(vals[0])
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("unit %s = %v, docs/OPERATIONS.md documents %v", key, got, want)
		}
	}
	compose, err := os.ReadFile(filepath.Join(repo, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^    cap_add: \[(.*)\]$`).FindSubmatch(compose)
	if m == nil {
		t.Fatal("docker-compose.yml: no cap_add line for auditns")
	}
	var got []string
	for _, c := range strings.Split(string(m[1]), ",") {
		got = append(got, "CAP_"+strings.TrimSpace(c))
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("docker-compose.yml cap_add = %v, docs/OPERATIONS.md documents %v", got, want)
	}
	for _, key := range []string{"RestartPreventExitStatus", "ProtectSystem", "StateDirectory", "NoNewPrivileges"} {
		if len(unitSettings(t, unit, key)) == 0 {
			t.Errorf("the unit lacks %s", key)
		}
	}
}

// systemd-analyze verify accepts the unit without a word: in a scratch root
// holding systemd's own units, an auditns binary where ExecStart says and
// the man pages Documentation= names (docs/man).
func TestSystemdUnitVerifies(t *testing.T) {
	analyze := tool(t, "systemd-analyze", "")
	root := t.TempDir()
	mustCopyTree(t, "/lib/systemd/system", filepath.Join(root, "usr", "lib", "systemd", "system"))
	unitDir := filepath.Join(root, "etc", "systemd", "system")
	if err := os.MkdirAll(unitDir, 0o755); err != nil {
		t.Fatal(err)
	}
	unit, err := os.ReadFile(filepath.Join(repo, "packaging", "systemd", "auditns.service"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(unitDir, "auditns.service"), unit, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "usr", "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, repo, []string{"GOFLAGS="}, "go", "build", "-o", filepath.Join(root, "usr", "bin", "auditns"), "./cmd/auditns"); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	args := []string{"verify", "--root=" + root}
	env := []string{}
	if _, err := exec.LookPath("man"); err == nil {
		manPath, _ := filepath.Abs(filepath.Join(repo, "docs", "man"))
		env = append(env, "MANPATH="+manPath)
	} else {
		args = append(args, "--man=no")
		t.Log("no man command: Documentation= man pages not checked")
	}
	out, err := run(t, "", env, analyze, append(args, "auditns.service")...)
	if err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}

	// The check can fail: a misspelt key is reported.
	bad := bytes.Replace(unit, []byte("ProtectSystem=strict"), []byte("ProtectSystm=strict"), 1)
	if err := os.WriteFile(filepath.Join(unitDir, "auditns.service"), bad, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, _ := run(t, "", env, analyze, append(args, "auditns.service")...); !strings.Contains(out, "Unknown key 'ProtectSystm'") {
		t.Fatalf("systemd-analyze verify did not report a misspelt key: %q", out)
	}
}

func mustCopyTree(t *testing.T, src, dst string) {
	t.Helper()
	if out, err := run(t, "", nil, "mkdir", "-p", filepath.Dir(dst)); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if out, err := run(t, "", nil, "cp", "-a", src, dst); err != nil {
		t.Fatalf("copy %s: %v: %s", src, err, out)
	}
}

// docker compose config accepts the compose file, and the resolved auditns
// service has the settings README.md and docs/OPERATIONS.md explain;
// AUDITNS_MODE switches the mode.
func TestComposeConfig(t *testing.T) {
	compose := tool(t, "docker-compose", "compose")
	file, _ := filepath.Abs(filepath.Join(repo, "docker-compose.yml"))
	if out, err := run(t, "", []string{"AUDITNS_MODE="}, compose, "-f", file, "config", "--quiet"); err != nil || out != "" {
		t.Fatalf("docker compose config --quiet: %v\n%s", err, out)
	}
	for _, mode := range []string{"", "multicast"} {
		out, err := run(t, "", []string{"AUDITNS_MODE=" + mode}, compose, "-f", file, "config", "--format", "json")
		if err != nil {
			t.Fatalf("docker compose config: %v\n%s", err, out)
		}
		var cfg struct {
			Services map[string]struct {
				PID         string            `json:"pid"`
				NetworkMode string            `json:"network_mode"`
				CapAdd      []string          `json:"cap_add"`
				CapDrop     []string          `json:"cap_drop"`
				SecurityOpt []string          `json:"security_opt"`
				Environment map[string]string `json:"environment"`
				Healthcheck struct {
					Test []string `json:"test"`
				} `json:"healthcheck"`
				Volumes []struct {
					Source   string `json:"source"`
					Target   string `json:"target"`
					ReadOnly bool   `json:"read_only"`
				} `json:"volumes"`
			} `json:"services"`
		}
		if err := json.Unmarshal([]byte(out), &cfg); err != nil {
			t.Fatalf("docker compose config --format json: %v\n%s", err, out)
		}
		a, ok := cfg.Services["auditns"]
		if !ok {
			t.Fatalf("no auditns service:\n%s", out)
		}
		wantMode := "unicast"
		if mode != "" {
			wantMode = mode
		}
		if a.Environment["AUDITNS_MODE"] != wantMode {
			t.Errorf("AUDITNS_MODE=%q: the service gets AUDITNS_MODE=%q", mode, a.Environment["AUDITNS_MODE"])
		}
		if a.PID != "host" || a.NetworkMode != "host" || !slices.Contains(a.SecurityOpt, "apparmor=unconfined") || !slices.Contains(a.SecurityOpt, "label=disable") || !slices.Equal(a.CapDrop, []string{"ALL"}) {
			t.Errorf("auditns service: pid %q network %q security_opt %v cap_drop %v", a.PID, a.NetworkMode, a.SecurityOpt, a.CapDrop)
		}
		if a.Environment["AUDITNS_METRICS_LISTEN"] == "" || !slices.Contains(a.Healthcheck.Test, "healthcheck") {
			t.Errorf("metrics %q, health check %v", a.Environment["AUDITNS_METRICS_LISTEN"], a.Healthcheck.Test)
		}
		mounts := map[string]bool{}
		for _, v := range a.Volumes {
			if v.Source == v.Target && v.ReadOnly {
				mounts[v.Target] = true
			}
		}
		if !mounts["/sys/kernel/btf"] || !mounts["/etc"] {
			t.Errorf("host mounts read-only at the same path: %v, want /sys/kernel/btf and /etc", mounts)
		}
	}
}

// promtool accepts the alert rules, and its rule tests (each alert fires
// on the series that should raise it, and only then) pass.
func TestPrometheusRules(t *testing.T) {
	promtool := tool(t, "promtool", "promtool")
	dir := filepath.Join(repo, "packaging", "prometheus")
	if out, err := run(t, dir, nil, promtool, "check", "rules", "auditns-alerts.yml"); err != nil || !strings.Contains(out, "SUCCESS: 10 rules found") {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	if out, err := run(t, dir, nil, promtool, "test", "rules", "auditns-alerts.test.yml"); err != nil || !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}

// The dashboard is a Grafana dashboard: JSON with a title and uid, the
// Prometheus datasource variable, and panels each with a unique id, a
// place on the grid and queries on that datasource. That every metric it
// queries is served is checked against a running auditns in test/e2e.
func TestDashboardLoads(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repo, "packaging", "grafana", "auditns.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title         string `json:"title"`
		UID           string `json:"uid"`
		SchemaVersion int    `json:"schemaVersion"`
		Templating    struct {
			List []struct {
				Name, Type string
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			ID      int    `json:"id"`
			Type    string `json:"type"`
			Title   string `json:"title"`
			GridPos struct {
				H, W, X, Y int
			} `json:"gridPos"`
			Datasource struct{ Type, UID string } `json:"datasource"`
			Targets    []struct {
				Expr, RefID string
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("auditns.json: %v", err)
	}
	if d.Title == "" || d.UID == "" || d.SchemaVersion < 30 || len(d.Panels) == 0 {
		t.Fatalf("title %q uid %q schemaVersion %d, %d panels", d.Title, d.UID, d.SchemaVersion, len(d.Panels))
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
	}
	if vars["datasource"] != "datasource" || vars["instance"] != "query" {
		t.Fatalf("template variables %v, want datasource (datasource) and instance (query)", vars)
	}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] || p.Title == "" || p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %d %q: duplicate id, no title or off the 24-column grid (%+v)", p.ID, p.Title, p.GridPos)
		}
		ids[p.ID] = true
		if p.Type != "timeseries" && p.Type != "stat" {
			t.Errorf("panel %q: type %q", p.Title, p.Type)
		}
		if p.Datasource.Type != "prometheus" || p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
			t.Errorf("panel %q: datasource %+v, %d queries", p.Title, p.Datasource, len(p.Targets))
		}
		for _, q := range p.Targets {
			if !strings.Contains(q.Expr, "auditns_") && !strings.Contains(q.Expr, "process_") {
				t.Errorf("panel %q: query %q reads no auditns metric", p.Title, q.Expr)
			}
			if !strings.Contains(q.Expr, `instance=~"$instance"`) {
				t.Errorf("panel %q: query %q ignores the instance variable", p.Title, q.Expr)
			}
		}
	}
}

// NOTICE names files that exist, and every go-libaudit test log the
// repository carries is among them.
func TestNoticeCoversCopiedFiles(t *testing.T) {
	notice, err := os.ReadFile(filepath.Join(repo, "NOTICE"))
	if err != nil {
		t.Fatal(err)
	}
	named := regexp.MustCompile(`internal/[A-Za-z0-9_./*-]+[A-Za-z0-9*]`).FindAllString(strings.Join(strings.Fields(string(notice)), " "), -1)
	if len(named) == 0 {
		t.Fatal("NOTICE names no file")
	}
	covered := map[string]bool{}
	for _, pat := range named {
		m, _ := filepath.Glob(filepath.Join(repo, pat))
		if len(m) == 0 {
			t.Errorf("NOTICE names %s, which matches no file", pat)
		}
		for _, f := range m {
			covered[f] = true
		}
	}
	carried, _ := filepath.Glob(filepath.Join(repo, "internal", "enrich", "testdata", "golibaudit-*"))
	carried = append(carried, filepath.Join(repo, "internal", "enrich", "normalizations.yaml"))
	for _, f := range carried {
		if !covered[f] {
			t.Errorf("%s is go-libaudit's and NOTICE does not name it", f)
		}
	}
}
