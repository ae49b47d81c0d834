package conform

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/auditns/auditns/internal/event"
	"github.com/auditns/auditns/internal/serial"
)

var update = flag.Bool("update", false, "rewrite docs/schema/auditns.namespace-1.schema.json")

func newChecker(t *testing.T) *Checker {
	t.Helper()
	c, err := New()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The encoder's field table agrees with ECS's: an ECS field has ECS's
// type and allowed values, every other field is under auditns or auditd,
// and neither name is ECS's.
func TestFieldTableIsECS(t *testing.T) {
	c := newChecker(t)
	for _, root := range OwnRoots {
		for name := range c.ECS {
			if name == root || strings.HasPrefix(name, root+".") {
				t.Errorf("%s is an ECS field: %s cannot be auditns's own", name, root)
			}
		}
	}
	for _, f := range event.EventFields {
		e, inECS := c.ECS[f.Name]
		switch {
		case f.ECS && !inECS:
			t.Errorf("%s: marked ECS, not in ECS's table", f.Name)
		case !f.ECS && inECS:
			t.Errorf("%s: is an ECS field, not marked so", f.Name)
		case !f.ECS && !Own(f.Name):
			t.Errorf("%s: auditns's own field outside %v", f.Name, OwnRoots)
		case f.ECS && e.Type != f.Type:
			t.Errorf("%s: type %s, ECS's %s", f.Name, f.Type, e.Type)
		}
		if allowed := e.Allowed(); f.ECS && len(allowed) > 0 {
			if len(f.Values) == 0 {
				t.Errorf("%s: ECS allows only %v, the table allows any value", f.Name, allowed)
			}
			for _, v := range f.Values {
				if !slices.Contains(allowed, v) {
					t.Errorf("%s: %q is not one of ECS's %v", f.Name, v, allowed)
				}
			}
		}
	}
}

// Each index template maps every field of the table with its type, and
// nothing else.
func TestIndexTemplatesMapEveryField(t *testing.T) {
	for _, name := range []string{"index-template.json", "index-template-opensearch.json"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "docs", "schema", name))
		if err != nil {
			t.Fatal(err)
		}
		var tmpl struct {
			Template struct {
				Mappings struct {
					Properties map[string]any `json:"properties"`
				} `json:"mappings"`
			} `json:"template"`
		}
		if err := json.Unmarshal(b, &tmpl); err != nil {
			t.Fatal(err)
		}
		mapped := map[string]string{}
		var walk func(prefix string, props map[string]any)
		walk = func(prefix string, props map[string]any) {
			for k, v := range props {
				m := v.(map[string]any)
				if sub, ok := m["properties"].(map[string]any); ok {
					walk(prefix+k+".", sub)
					continue
				}
				mapped[prefix+k], _ = m["type"].(string)
			}
		}
		walk("", tmpl.Template.Mappings.Properties)
		for _, f := range event.EventFields {
			want := f.Type
			opensearch := strings.Contains(name, "opensearch")
			switch {
			case want == "match_only_text" && opensearch:
				want = "text"
			case want == "object" && opensearch:
				want = "flat_object"
			case want == "object":
				want = "flattened"
			}
			if got, ok := mapped[f.Name]; !ok {
				t.Errorf("%s does not map %s", name, f.Name)
			} else if got != want {
				t.Errorf("%s maps %s as %s, want %s", name, f.Name, got, want)
			}
			delete(mapped, f.Name)
		}
		for f := range mapped {
			t.Errorf("%s maps %s, which auditns does not write", name, f)
		}
	}
}

// docs/schema/auditns.namespace-1.schema.json is serial.JSONSchema.
func TestPublishedNamespaceSchema(t *testing.T) {
	path := filepath.Join("..", "..", "docs", "schema", "auditns.namespace-1.schema.json")
	if *update {
		if err := os.WriteFile(path, []byte(serial.JSONSchema), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil || string(b) != serial.JSONSchema {
		t.Fatalf("%s is not serial.JSONSchema (go test ./internal/conform -run TestPublishedNamespaceSchema -update): %v", path, err)
	}
}

// Registry records as the registry writes them validate; a broken one
// does not.
func TestRegistryRecordsValidate(t *testing.T) {
	c := newChecker(t)
	id := uint64(4105)
	now := serial.MakeTime(time.Date(2026, 11, 28, 12, 0, 0, 123456000, time.UTC))
	full := serial.Record{Schema: serial.Schema, ID: "b/12", Host: serial.Host{Name: "web-1", BootID: "b"}, Type: serial.Types[6],
		Serial: 12, Inum: 4026532177, Dev: "0:4", NsID: &id, IDSrc: serial.IDKernel, OwnerUser: &serial.SerialRef{Serial: 3},
		FirstSeen: now, FirstEvent: "b:97", CreatedBy: &serial.CreatedBy{Event: "b:97", Op: "unshare", PID: 3218, Exe: "/usr/bin/unshare"},
		LastSeen: now, Gone: &now}
	initial := serial.Record{Schema: serial.Schema, ID: "b/1", Host: serial.Host{Name: "web-1", BootID: "b"}, Type: serial.Types[0],
		Serial: 1, Inum: 4026531839, Dev: "0:4", IDSrc: serial.IDPinned, IsInit: true, FirstSeen: now, LastSeen: now}
	for _, r := range []serial.Record{full, initial} {
		b, err := json.Marshal(&r)
		if err != nil {
			t.Fatal(err)
		}
		if v := c.Record(b); v != nil {
			t.Errorf("%s: %v", b, v)
		}
	}
	b, _ := json.Marshal(&full)
	for _, broken := range []string{
		strings.Replace(string(b), `"type":"net"`, `"type":"netns"`, 1),
		strings.Replace(string(b), `"serial":12`, `"serial":0`, 1),
		strings.Replace(string(b), `"gone":`, `"extra":1,"gone":`, 1),
	} {
		if c.Record([]byte(broken)) == nil {
			t.Errorf("accepted %s", broken)
		}
	}
}

// The checker finds what breaks an ECS index or the schema.
func TestCheckerFindsViolations(t *testing.T) {
	c := newChecker(t)
	ok := `{"@timestamp":"2026-11-28T12:02:37.994000Z","ecs":{"version":"9.4.0"},"agent":{"name":"auditns","type":"auditns"},` +
		`"event":{"id":"b:1","sequence":1,"kind":"event","type":["start"],"module":"auditd","dataset":"auditd.auditns"},` +
		`"host":{"name":"h","boot":{"id":"b"},"os":{"type":"linux"}},"source":{"address":"?"},"auditns":{"schema":"auditns.event/2"}}`
	if v := c.Event([]byte(ok)); v != nil {
		t.Fatalf("a conforming event: %v", v)
	}
	for _, c2 := range []struct{ from, to, why string }{
		{`"type":["start"]`, `"type":["SYSCALL"]`, "event.type"},
		{`"kind":"event"`, `"kind":"loss"`, "event.kind"},
		{`"source":{"address":"?"}`, `"source":{"ip":"?"}`, "source.ip"},
		{`"source":{"address":"?"}`, `"process":{"tty":"pts0"}`, "process.tty"},
		{`"source":{"address":"?"}`, `"syscall":{"nr":1}`, "syscall"},
		{`"source":{"address":"?"}`, `"process":{"pid":"12"}`, "process.pid"},
		{`"schema":"auditns.event/2"}`, `"schema":"auditns.event/2","extra":1}`, "'extra' not allowed"},
	} {
		bad := strings.Replace(ok, c2.from, c2.to, 1)
		v := c.Event([]byte(bad))
		if len(v) == 0 || !strings.Contains(strings.Join(v, "\n"), c2.why) {
			t.Errorf("%s: %v", c2.why, v)
		}
	}
}

// The events auditns writes about itself (as the pipeline makes them)
// conform too.
func TestOwnEventsConform(t *testing.T) {
	c := newChecker(t)
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	host := event.Host{Name: "web-1", Boot: event.Boot{ID: "b"}, Kernel: "6.18.0"}
	for _, e := range []*event.Event{
		{Schema: event.Schema, Event: event.Meta{ID: "b:gap-4-6", Created: now, Kind: event.KindLoss, Action: "sequence_gap", Outcome: "failure"},
			Host: host, Message: "audit sequence numbers 4-6 never arrived", Loss: &event.Loss{Reason: "sequence_gap", Count: 3, From: 4, To: 6}},
		{Schema: event.Schema, Event: event.Meta{ID: "b:auditns-state-1-started", Created: now, Kind: event.KindState, Action: "started", Outcome: "success"},
			Host: host, Message: "auditns started"},
	} {
		if v := c.Event(e.AppendJSON(nil)); v != nil {
			t.Errorf("%s: %v", e.AppendJSON(nil), v)
		}
	}
}

// The example events of the documentation conform.
func TestDocExamplesConform(t *testing.T) {
	c := newChecker(t)
	n := 0
	for _, path := range []string{"../../README.md", "../../docs/SCHEMA.md"} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, block := range strings.Split(string(b), "```json\n")[1:] {
			block = block[:strings.Index(block, "```")]
			if !strings.Contains(block, `"`+event.Schema+`"`) {
				continue
			}
			n++
			if v := c.Event([]byte(block)); v != nil {
				t.Errorf("%s: %v", path, v)
			}
		}
	}
	if n < 2 {
		t.Fatalf("%d examples found", n)
	}
}
