package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/auditns/auditns/configs"
)

func write(t *testing.T, body string) string {
	p := filepath.Join(t.TempDir(), "auditns.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// configs/auditns.yaml documents every key, with its default, and no other.
func TestExampleConfigDocumentsEveryKeyWithItsDefault(t *testing.T) {
	raw := viper.New()
	raw.SetConfigType("yaml")
	if err := raw.ReadConfig(strings.NewReader(configs.ExampleConfig)); err != nil {
		t.Fatal(err)
	}
	got := raw.AllKeys()
	sort.Strings(got)
	if !reflect.DeepEqual(got, Keys()) {
		t.Fatalf("documented keys differ from known keys:\n doc %v\nknown %v", got, Keys())
	}
	fromFile, err := NewLoader().Load(write(t, configs.ExampleConfig))
	if err != nil {
		t.Fatal(err)
	}
	fromDefaults, err := NewLoader().Load("")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fromFile, fromDefaults) {
		t.Fatalf("the example's values are not the defaults:\nfile %+v\ndefaults %+v", fromFile, fromDefaults)
	}
}

func TestDefaultsWriteToStdout(t *testing.T) {
	c, err := NewLoader().Load("")
	if err != nil {
		t.Fatal(err)
	}
	if c.Output.Kind != "stdout" || c.Mode != "unicast" || c.Audit.BacklogLimit != 16384 || c.Audit.BacklogWaitTime != 0 ||
		c.Kafka.BatchTimeout.Milliseconds() != 10 || c.Kafka.Spool.Dir != "/var/lib/auditns/spool" {
		t.Fatalf("%+v", c)
	}
}

func TestPrecedenceFlagEnvFileDefault(t *testing.T) {
	file := write(t, "audit:\n  backlog_limit: 100\n  rate_limit: 7\nkafka:\n  topic: fromfile\n")
	t.Setenv("AUDITNS_AUDIT_BACKLOG_LIMIT", "200")
	t.Setenv("AUDITNS_KAFKA_BROKERS", "a:1,b:2")
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	fs.Uint32("backlog", 0, "")
	fs.Parse([]string{"--backlog=300"})
	l := NewLoader()
	l.BindFlag("audit.backlog_limit", fs.Lookup("backlog"))
	c, err := l.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if c.Audit.BacklogLimit != 300 || c.Audit.RateLimit != 7 || c.Kafka.Topic != "fromfile" || c.Audit.QueueSize != 256 {
		t.Fatalf("flag>env>file>default broken: %+v", c.Audit)
	}
	if !reflect.DeepEqual(c.Kafka.Brokers, []string{"a:1", "b:2"}) || c.Output.Kind != "kafka" {
		t.Fatalf("brokers %v output %v", c.Kafka.Brokers, c.Output.Kind)
	}
}

func TestBadInputIsOneLineNamingTheKey(t *testing.T) {
	cases := []struct{ file, env, val, want string }{
		{file: "audit:\n  backlog_limit: lots\n", want: "audit.backlog_limit: expected an integer"},
		{file: "audit:\n  backlog_limt: 5\n", want: `unknown key "audit.backlog_limt"`},
		{file: "mode: loud\n", want: "mode: expected one of unicast, multicast"},
		{env: "AUDITNS_OUTPUT", val: "ftp://x", want: "output.sink: expected stdout, file:PATH or kafka"},
		{env: "AUDITNS_OUTPUT", val: "kafka", want: "output.sink: kafka needs kafka.brokers"},
		{env: "AUDITNS_KAFKA_BATCH_TIMEOUT", val: "soon", want: "kafka.batch_timeout: expected a duration"},
		{env: "AUDITNS_KAFKA_KEY", val: "pid", want: "kafka.key: expected one of host, pidns, event, none"},
		{file: "kafka:\n  topic_config:\n    retention: 10m\n", want: "kafka.topic_config.retention: expected a duration of at least 1h"},
		{file: "kafka:\n  topic_config:\n    min_insync_replicas: -1\n", want: "kafka.topic_config.min_insync_replicas: expected"},
		{file: "kafka:\n  dead_letter_max_bytes: 10\n", want: "kafka.dead_letter_max_bytes: expected"},
		{file: "audit: [1, 2\n", want: "config file"},
	}
	for _, tc := range cases {
		t.Run(tc.want, func(t *testing.T) {
			if tc.env != "" {
				t.Setenv(tc.env, tc.val)
			}
			f := ""
			if tc.file != "" {
				f = write(t, tc.file)
			}
			_, err := NewLoader().Load(f)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("got %v, want one line containing %q", err, tc.want)
			}
		})
	}
}

func TestMissingFileIsClear(t *testing.T) {
	_, err := NewLoader().Load("/nonexistent/auditns.yaml")
	if err == nil || err.Error() != "config file /nonexistent/auditns.yaml: not found" {
		t.Fatalf("got %v", err)
	}
}

// A Config printed or logged whole never shows the SASL password.
func TestPrintedConfigHidesThePassword(t *testing.T) {
	t.Setenv("AUDITNS_KAFKA_SASL_MECHANISM", "plain")
	t.Setenv("AUDITNS_KAFKA_SASL_USERNAME", "svc")
	t.Setenv("AUDITNS_KAFKA_SASL_PASSWORD", "hunter2-secret")
	c, err := NewLoader().Load("")
	if err != nil {
		t.Fatal(err)
	}
	if c.Kafka.SASL.Password != "hunter2-secret" {
		t.Fatal("password not loaded")
	}
	for _, f := range []string{"%v", "%+v", "%#v"} {
		if s := fmt.Sprintf(f, c.Kafka); strings.Contains(s, "hunter2") {
			t.Fatalf("%s of the Kafka config shows the password: %s", f, s)
		}
	}
}
