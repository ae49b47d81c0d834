package config

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// Each key says which layer set it, and the SASL password is masked
// wherever it came from.
func TestSettingsNameTheirOrigin(t *testing.T) {
	file := write(t, "audit:\n  backlog_limit: 100\n  rate_limit: 7\nkafka:\n  sasl:\n    password: hunter2-secret\n")
	t.Setenv("AUDITNS_AUDIT_BACKLOG_LIMIT", "200")
	t.Setenv("AUDITNS_KAFKA_BROKERS", "a:1,b:2")
	t.Setenv("AUDITNS_OUTPUT", "kafka")
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	fs.String("mode", "", "")
	fs.String("state-dir", "", "")
	fs.Parse([]string{"--mode=multicast"})
	l := NewLoader()
	l.BindFlag("mode", fs.Lookup("mode"))
	l.BindFlag("state_dir", fs.Lookup("state-dir")) // bound, not given
	if _, err := l.Load(file); err != nil {
		t.Fatal(err)
	}
	got := map[string]Setting{}
	for _, s := range l.Settings() {
		got[s.Key] = s
	}
	if len(got) != len(Keys()) {
		t.Fatalf("%d settings for %d keys", len(got), len(Keys()))
	}
	for _, want := range []Setting{
		{"mode", "multicast", "flag --mode"},
		{"state_dir", "/var/lib/auditns", "default"},
		{"audit.backlog_limit", "200", "env AUDITNS_AUDIT_BACKLOG_LIMIT"},
		{"audit.rate_limit", "7", "file " + file},
		{"output.sink", "kafka", "env AUDITNS_OUTPUT"},
		{"kafka.brokers", "a:1,b:2", "env AUDITNS_KAFKA_BROKERS"},
		{"kafka.topic", "auditns.events", "default"},
		{"kafka.sasl.password", Masked, "file " + file},
		{"kafka.spool.dir", "", "default"},
	} {
		if got[want.Key] != want {
			t.Errorf("%s: got %+v, want %+v", want.Key, got[want.Key], want)
		}
	}
	var buf bytes.Buffer
	if err := WriteSettings(&buf, l.Settings()); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if strings.Contains(out, "hunter2") {
		t.Fatalf("the table shows the password:\n%s", out)
	}
	if !strings.Contains(out, "kafka.sasl.password ") || !strings.Contains(out, Masked) || strings.Count(out, "\n") != len(Keys())+1 {
		t.Fatalf("table:\n%s", out)
	}
}

// A file's list is shown as a list; an unset password is shown empty, not
// masked (so that "is it set?" has an answer).
func TestSettingsListsAndUnsetSecrets(t *testing.T) {
	l := NewLoader()
	if _, err := l.Load(write(t, "kafka:\n  brokers: [a:1, b:2]\n")); err != nil {
		t.Fatal(err)
	}
	for _, s := range l.Settings() {
		switch s.Key {
		case "kafka.brokers":
			if s.Value != "[a:1, b:2]" {
				t.Errorf("kafka.brokers = %q", s.Value)
			}
		case "kafka.sasl.password":
			if s.Value != "" || s.Origin != "default" {
				t.Errorf("unset password shown as %+v", s)
			}
		}
	}
}

// The error of a bad value names the layer that set it.
func TestErrorNamesTheFlag(t *testing.T) {
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	fs.String("mode", "", "")
	fs.Parse([]string{"--mode=loud"})
	l := NewLoader()
	l.BindFlag("mode", fs.Lookup("mode"))
	_, err := l.Load("")
	if err == nil || err.Error() != `mode: expected one of unicast, multicast, got "loud" (set by flag --mode)` {
		t.Fatalf("got %v", err)
	}
}
