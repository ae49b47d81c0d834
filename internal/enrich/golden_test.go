package enrich

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/elastic/go-libaudit/v2/aucoalesce"

	"github.com/auditns/auditns/internal/conform"
	"github.com/auditns/auditns/internal/event"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/golden from the current code")

// goldenFiles are the recorded records the golden test runs over: real
// kernel output ("TYPE text" lines) and audit.log files (go-libaudit's own
// corpus, Apache-2.0, Elasticsearch B.V.).
func goldenFiles(t testing.TB) []string {
	var files []string
	for _, pat := range []string{"testdata/*.txt", "testdata/*.log"} {
		m, err := filepath.Glob(pat)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	slices.Sort(files)
	return files
}

// goldenOutput is the JSON of every event of a file, one per line, in the
// order the assembler emits them. The process cache reads an empty /proc,
// so that the live processes of the machine running the test do not leak
// into the output. Warnings are sorted: go-libaudit produced some of them
// in map order.
func goldenOutput(t *testing.T, path string, raw bool) []byte {
	e, err := New(Options{HostName: "h", BootID: "boot", Kernel: "6.18", Raw: raw, ProcRoot: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	setTestNames(e)
	// event.created: when the test read the records.
	e.SetClock(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	var out []byte
	for _, recs := range loadEvents(t, path) {
		var ev event.Event
		if err := e.Enrich(recs, &ev); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if ev.Auditd != nil {
			slices.Sort(ev.Auditd.Warnings)
		}
		out = ev.AppendJSON(out)
		out = append(out, '\n')
	}
	return out
}

// TestGolden holds Enrich to the JSON recorded in testdata/golden (go test
// -run TestGolden -update rewrites it; review the diff).
func TestGolden(t *testing.T) {
	for _, path := range goldenFiles(t) {
		for _, raw := range []bool{false, true} {
			name := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
			if raw {
				name += ".raw"
			}
			t.Run(name, func(t *testing.T) {
				got := goldenOutput(t, path, raw)
				golden := filepath.Join("testdata", "golden", name+".jsonl")
				if *updateGolden {
					if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(golden, got, 0o644); err != nil {
						t.Fatal(err)
					}
					return
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatal(err)
				}
				gl, wl := bytes.Split(got, []byte("\n")), bytes.Split(want, []byte("\n"))
				for i := 0; i < len(gl) || i < len(wl); i++ {
					var g, w []byte
					if i < len(gl) {
						g = gl[i]
					}
					if i < len(wl) {
						w = wl[i]
					}
					if !bytes.Equal(g, w) {
						t.Errorf("%s line %d:\n got %s\nwant %s", golden, i+1, g, w)
					}
				}
			})
		}
	}
}

// setTestNames makes uid/gid names independent of the machine: the names
// of the machine the golden files were recorded on.
func setTestNames(e *Enricher) {
	users := map[string]string{"0": "root", "38": "list", "42": "_apt", "100": "messagebus", "1000": "cloudsdk", "65534": "nobody"}
	groups := map[string]string{"0": "root", "22": "voice", "38": "list", "42": "shadow", "100": "users", "1000": "cloudsdk", "65534": "nogroup"}
	byName := map[string]string{}
	for id, name := range users {
		byName[name] = id
	}
	e.names.userByID.lookup = func(id string) string { return users[id] }
	e.names.groupByID.lookup = func(id string) string { return groups[id] }
	e.names.userByName.lookup = func(name string) string { return byName[name] }
}

// Every golden event is an ECS document that the JSON Schema of events
// accepts.
func TestGoldensConform(t *testing.T) {
	c, err := conform.New()
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "golden", "*.jsonl"))
	if len(files) == 0 {
		t.Fatal("no golden files")
	}
	total := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		n, v := c.Lines(b)
		total += n
		for _, x := range v {
			t.Errorf("%s %s", f, x)
		}
	}
	t.Logf("%d events in %d files conform", total, len(files))
}

// Every event.category and event.type go-libaudit's normalizations can
// give is one of ECS's values, as the schema says.
func TestNormalizationsGiveECSValues(t *testing.T) {
	allowed := map[string][]string{}
	for _, f := range event.EventFields {
		if f.Name == "event.category" || f.Name == "event.type" {
			allowed[f.Name] = f.Values
		}
	}
	n := norms()
	check := func(what string, c *ecsCats) {
		for _, v := range c.category {
			if !slices.Contains(allowed["event.category"], v) {
				t.Errorf("%s: event.category %q", what, v)
			}
		}
		for _, v := range c.types {
			if !slices.Contains(allowed["event.type"], v) {
				t.Errorf("%s: event.type %q", what, v)
			}
		}
	}
	e := &Enricher{cats: map[[2]*aucoalesce.Normalization]ecsCats{}}
	for name, sys := range n.syscalls {
		c := e.categories(sys, sys)
		check("syscall "+name, &c)
		for typ, recs := range n.records {
			for _, r := range recs {
				c := e.categories(r, sys)
				check(typ+" with "+name, &c)
			}
		}
	}
}
