// Package config loads auditns's settings with viper: built-in defaults,
// then a YAML file, then AUDITNS_* environment variables, then flags
// (flag > env > file > default). Every value is checked here, once, so the
// rest of the program receives a Config it can trust; a bad value is a
// one-line error naming the key and what was expected.
package config

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cast"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/auditns/auditns/internal/assemble"
	"github.com/auditns/auditns/internal/enrich"
	"github.com/auditns/auditns/internal/kafkaauth"
	"github.com/auditns/auditns/internal/netlink"
	"github.com/auditns/auditns/internal/pipeline"
	"github.com/auditns/auditns/internal/publish"
	"github.com/auditns/auditns/internal/serial"
	"github.com/auditns/auditns/internal/spool"
)

// Config is the validated configuration.
type Config struct {
	Mode     string // unicast | multicast
	Output   Output
	StateDir string
	HostName string
	Log      Log
	Audit    Audit
	Enrich   Enrich
	Kafka    Kafka
	Metrics  Metrics
	// MaxProcs is the number of CPUs auditns's Go code runs on at once
	// (GOMAXPROCS); 0 = the runtime's default, every CPU it may use.
	MaxProcs int
}

// Output is where events go.
type Output struct {
	// Kind is "stdout", "file" or "kafka".
	Kind string
	// Path is the file of Kind "file".
	Path string
	// Raw includes the kernel's records in event.original.
	Raw bool
	// FlushInterval bounds how long an event waits in the file sink's
	// buffer.
	FlushInterval time.Duration
}

// Log configures auditns's own log (stderr).
type Log struct {
	Level  string // debug | info | warn | error
	Format string // text | json
}

// Audit is the kernel side.
type Audit struct {
	RulesFile         string // "" = the embedded default rules
	BacklogLimit      uint32
	RateLimit         uint32
	BacklogWaitTime   int32
	FailureMode       string // silent | printk | panic
	Immutable         bool
	ExcludeSelf       bool
	ReceiveBuffer     int
	StatusInterval    time.Duration
	QueueSize         int
	ReassemblyTimeout time.Duration
	MaxInFlight       int
}

// Enrich is the enrichment stage.
type Enrich struct {
	NSRules      bool
	ProcessCache int
	Namespaces   bool
	IDMethod     string // "" (probe) | kernel | pinned
	// Source is where subjects' namespaces come from: auto (the kernel
	// side, eBPF, where it loads; else /proc), bpf (the kernel side or
	// fail), proc (read /proc after the fact).
	Source string
}

// Kafka is the Kafka sink.
type Kafka struct {
	Brokers           []string
	Topic             string
	NamespacesTopic   string
	Key               string // host | pidns | event | none
	Compression       string
	CreateTopics      bool
	Partitions        int
	ReplicationFactor int // 0: min(3, brokers)
	// TopicRetention is the events topic's retention (negative: forever);
	// TopicMinInsync its min.insync.replicas (0: automatic).
	TopicRetention time.Duration
	TopicMinInsync int
	BatchTimeout   time.Duration
	BatchSize      int
	BatchBytes     int64
	WriteTimeout   time.Duration
	TLS            TLS
	SASL           SASL
	Spool          Spool
	DeadLetter     string
	DeadLetterMax  int64
}

// TLS for Kafka (kafka.tls.*): the type the Kafka sink and tail/replay
// build their TLS configuration from, so the settings are declared once.
type TLS = kafkaauth.TLS

// SASL for Kafka (kafka.sasl.*). Being kafkaauth's type, its password is
// redacted wherever a Config is printed or logged.
type SASL = kafkaauth.SASL

// Spool is the durable buffer in front of Kafka.
type Spool struct {
	Dir          string
	MaxBytes     int64
	SegmentBytes int64
	FullPolicy   string // drop_newest | drop_oldest
	SyncInterval time.Duration
}

// Metrics is the Prometheus and health endpoint.
type Metrics struct {
	Listen string // "" = off
}

// defaults lists every key with its default; a key not here is unknown.
// A default that the package using the value also applies (to a zero
// option) is that package's constant, so that the two cannot disagree.
var defaults = map[string]any{
	"mode":                                   string(netlink.Unicast),
	"output.sink":                            "",
	"output.raw":                             false,
	"output.flush_interval":                  durationText(publish.DefaultFlushInterval),
	"state_dir":                              serial.DefaultDir,
	"host_name":                              "",
	"max_procs":                              1,
	"log.level":                              "info",
	"log.format":                             "text",
	"audit.rules_file":                       "",
	"audit.backlog_limit":                    netlink.DefaultBacklogLimit,
	"audit.rate_limit":                       0,
	"audit.backlog_wait_time":                0,
	"audit.failure_mode":                     "printk",
	"audit.immutable":                        false,
	"audit.exclude_self":                     true,
	"audit.receive_buffer":                   netlink.DefaultReceiveBuffer,
	"audit.status_interval":                  durationText(pipeline.DefaultStatusInterval),
	"audit.queue_size":                       pipeline.DefaultQueueSize,
	"audit.reassembly_timeout":               durationText(assemble.DefaultTimeout),
	"audit.max_in_flight":                    assemble.DefaultMaxInFlight,
	"enrich.namespaces":                      true,
	"enrich.ns_rules":                        true,
	"enrich.process_cache":                   enrich.DefaultCacheSize,
	"enrich.id_method":                       "",
	"enrich.source":                          "auto",
	"kafka.brokers":                          []string{},
	"kafka.topic":                            publish.DefaultKafkaEventsTopic,
	"kafka.namespaces_topic":                 publish.DefaultKafkaNamespacesTopic,
	"kafka.key":                              "host",
	"kafka.compression":                      publish.DefaultKafkaCompression,
	"kafka.create_topics":                    true,
	"kafka.partitions":                       publish.DefaultKafkaPartitions,
	"kafka.replication_factor":               publish.DefaultKafkaReplicationFactor,
	"kafka.topic_config.retention":           durationText(publish.DefaultKafkaRetention),
	"kafka.topic_config.min_insync_replicas": 0,
	"kafka.batch_timeout":                    durationText(publish.DefaultKafkaBatchTimeout),
	"kafka.batch_size":                       publish.DefaultKafkaBatchSize,
	"kafka.batch_bytes":                      publish.DefaultKafkaBatchBytes,
	"kafka.write_timeout":                    durationText(publish.DefaultKafkaWriteTimeout),
	"kafka.tls.enabled":                      false,
	"kafka.tls.ca_file":                      "",
	"kafka.tls.cert_file":                    "",
	"kafka.tls.key_file":                     "",
	"kafka.tls.server_name":                  "",
	"kafka.tls.insecure_skip_verify":         false,
	"kafka.sasl.mechanism":                   "",
	"kafka.sasl.username":                    "",
	"kafka.sasl.password":                    "",
	"kafka.sasl.password_file":               "",
	"kafka.spool.dir":                        "",
	"kafka.spool.max_bytes":                  int64(spool.DefaultMaxBytes),
	"kafka.spool.segment_bytes":              int64(spool.DefaultSegmentBytes),
	"kafka.spool.full_policy":                string(spool.FullDropNewest),
	"kafka.spool.sync_interval":              durationText(spool.DefaultSyncInterval),
	"kafka.dead_letter":                      "",
	"kafka.dead_letter_max_bytes":            int64(publish.DefaultDeadLetterMaxBytes),
	"metrics.listen":                         "",
}

// durationText writes d as configs/auditns.yaml does (2160h, not
// 2160h0m0s), for `auditns config show`.
func durationText(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// Keys returns every configuration key, sorted.
func Keys() []string {
	keys := make([]string, 0, len(defaults))
	for k := range defaults {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// EnvName is the environment variable of key: AUDITNS_ + upper case with _
// for "." (kafka.tls.ca_file → AUDITNS_KAFKA_TLS_CA_FILE).
func EnvName(key string) string {
	return "AUDITNS_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// Loader builds a Config from defaults, a file, the environment and flags.
type Loader struct {
	v     *viper.Viper
	flags map[string]*pflag.Flag // key -> the flag bound to it
	file  string                 // the file Load read, "" for none
}

// NewLoader returns a Loader with every default and environment variable
// registered. AUDITNS_OUTPUT is accepted as a short form of
// AUDITNS_OUTPUT_SINK.
func NewLoader() *Loader {
	v := viper.New()
	for k, d := range defaults {
		v.SetDefault(k, d)
		v.BindEnv(k, EnvName(k))
	}
	v.BindEnv("output.sink", EnvName("output.sink"), "AUDITNS_OUTPUT")
	return &Loader{v: v, flags: map[string]*pflag.Flag{}}
}

// BindFlag makes flag f set key (flags beat env, file and default).
func (l *Loader) BindFlag(key string, f *pflag.Flag) {
	if _, ok := defaults[key]; !ok {
		panic("config: flag bound to unknown key " + key)
	}
	l.v.BindPFlag(key, f)
	l.flags[key] = f
}

// Load reads file (YAML; "" for none) and returns the validated Config.
func (l *Loader) Load(file string) (*Config, error) {
	v := l.v
	l.file = file
	if file != "" {
		v.SetConfigFile(file)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("config file %s: not found", file)
			}
			return nil, fmt.Errorf("config file %s: %v", file, oneLine(err))
		}
		raw := viper.New()
		raw.SetConfigFile(file)
		raw.SetConfigType("yaml")
		_ = raw.ReadInConfig()
		if err := checkKnown(raw.AllSettings()); err != nil {
			return nil, fmt.Errorf("config file %s: %w", file, err)
		}
	}
	return l.build()
}

func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// checkKnown rejects keys the file sets that auditns does not know: a
// misspelt key would otherwise be silently ignored.
func checkKnown(settings map[string]any) error {
	var unknown []string
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, val := range m {
			key := prefix + strings.ToLower(k)
			if _, ok := defaults[key]; ok {
				continue
			}
			if sub, ok := val.(map[string]any); ok && hasPrefix(key+".") {
				walk(key+".", sub)
				continue
			}
			unknown = append(unknown, key)
		}
	}
	walk("", settings)
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return fmt.Errorf("unknown key %q (known keys: see configs/auditns.yaml)", unknown[0])
	}
	return nil
}

func hasPrefix(p string) bool {
	for k := range defaults {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}

// getter converts values and remembers the first error, naming the key.
type getter struct {
	l   *Loader
	v   *viper.Viper
	err error
}

func (g *getter) fail(key, expected string) {
	if g.err == nil {
		g.err = fmt.Errorf("%s: expected %s, got %q (set by %s)", key, expected, fmt.Sprint(g.v.Get(key)), g.l.origin(key))
	}
}

func (g *getter) str(key string, allowed ...string) string {
	s, err := cast.ToStringE(g.v.Get(key))
	if err != nil {
		g.fail(key, "a string")
		return ""
	}
	if len(allowed) > 0 {
		for _, a := range allowed {
			if s == a {
				return s
			}
		}
		g.fail(key, "one of "+strings.Join(quoteAll(allowed), ", "))
	}
	return s
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		if s == "" {
			s = `""`
		}
		out[i] = s
	}
	return out
}

func (g *getter) boolean(key string) bool {
	b, err := cast.ToBoolE(g.v.Get(key))
	if err != nil {
		g.fail(key, "true or false")
	}
	return b
}

func (g *getter) integer(key string, min, max int64) int64 {
	n, err := cast.ToInt64E(g.v.Get(key))
	if err != nil || n < min || n > max {
		g.fail(key, fmt.Sprintf("an integer from %d to %d", min, max))
	}
	return n
}

func (g *getter) duration(key string, min time.Duration) time.Duration {
	d, err := cast.ToDurationE(g.v.Get(key))
	if err != nil || d < min {
		g.fail(key, fmt.Sprintf("a duration such as 250ms or 2s, at least %v", min))
	}
	return d
}

// retention is a topic retention: a duration of at least 1h, or "forever"
// (-1).
func (g *getter) retention(key string) time.Duration {
	v := strings.TrimSpace(fmt.Sprint(g.v.Get(key)))
	if v == "forever" {
		return -1
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < time.Hour {
		g.fail(key, "a duration of at least 1h such as 2160h (90 days), or forever")
	}
	return d
}

func (g *getter) strings(key string) []string {
	raw := g.v.Get(key)
	var out []string
	switch x := raw.(type) {
	case string:
		for _, s := range strings.Split(x, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	default:
		ss, err := cast.ToStringSliceE(raw)
		if err != nil {
			g.fail(key, "a list of strings")
		}
		for _, s := range ss {
			for _, p := range strings.Split(s, ",") {
				if p = strings.TrimSpace(p); p != "" {
					out = append(out, p)
				}
			}
		}
	}
	return out
}

func (l *Loader) build() (*Config, error) {
	g := &getter{l: l, v: l.v}
	c := &Config{}
	c.Mode = g.str("mode", "unicast", "multicast")
	c.StateDir = g.str("state_dir")
	c.HostName = g.str("host_name")
	c.MaxProcs = int(g.integer("max_procs", 0, 1024))
	c.Log = Log{Level: g.str("log.level", "debug", "info", "warn", "error"), Format: g.str("log.format", "text", "json")}

	c.Audit = Audit{
		RulesFile:         g.str("audit.rules_file"),
		BacklogLimit:      uint32(g.integer("audit.backlog_limit", 1, 1<<31)),
		RateLimit:         uint32(g.integer("audit.rate_limit", 0, 1<<31)),
		BacklogWaitTime:   int32(g.integer("audit.backlog_wait_time", 0, 600000)),
		FailureMode:       g.str("audit.failure_mode", "silent", "printk", "panic"),
		Immutable:         g.boolean("audit.immutable"),
		ExcludeSelf:       g.boolean("audit.exclude_self"),
		ReceiveBuffer:     int(g.integer("audit.receive_buffer", 0, 1<<30)),
		StatusInterval:    g.duration("audit.status_interval", 100*time.Millisecond),
		QueueSize:         int(g.integer("audit.queue_size", 1, 1<<20)),
		ReassemblyTimeout: g.duration("audit.reassembly_timeout", 10*time.Millisecond),
		MaxInFlight:       int(g.integer("audit.max_in_flight", 1, 1<<20)),
	}
	c.Enrich = Enrich{
		Namespaces:   g.boolean("enrich.namespaces"),
		NSRules:      g.boolean("enrich.ns_rules"),
		ProcessCache: int(g.integer("enrich.process_cache", 16, 1<<20)),
		IDMethod:     g.str("enrich.id_method", "", "kernel", "pinned"),
		Source:       g.str("enrich.source", "auto", "bpf", "proc"),
	}
	c.Kafka = Kafka{
		Brokers:           g.strings("kafka.brokers"),
		Topic:             g.str("kafka.topic"),
		NamespacesTopic:   g.str("kafka.namespaces_topic"),
		Key:               g.str("kafka.key", "host", "pidns", "event", "none"),
		Compression:       g.str("kafka.compression", "none", "gzip", "snappy", "lz4", "zstd"),
		CreateTopics:      g.boolean("kafka.create_topics"),
		Partitions:        int(g.integer("kafka.partitions", 1, 10000)),
		ReplicationFactor: int(g.integer("kafka.replication_factor", 0, 100)),
		TopicRetention:    g.retention("kafka.topic_config.retention"),
		TopicMinInsync:    int(g.integer("kafka.topic_config.min_insync_replicas", 0, 100)),
		BatchTimeout:      g.duration("kafka.batch_timeout", time.Millisecond),
		BatchSize:         int(g.integer("kafka.batch_size", 1, 1<<20)),
		BatchBytes:        g.integer("kafka.batch_bytes", 1<<10, 1<<30),
		WriteTimeout:      g.duration("kafka.write_timeout", 100*time.Millisecond),
		TLS: TLS{
			Enabled:            g.boolean("kafka.tls.enabled"),
			CAFile:             g.str("kafka.tls.ca_file"),
			CertFile:           g.str("kafka.tls.cert_file"),
			KeyFile:            g.str("kafka.tls.key_file"),
			ServerName:         g.str("kafka.tls.server_name"),
			InsecureSkipVerify: g.boolean("kafka.tls.insecure_skip_verify"),
		},
		SASL: SASL{
			Mechanism:    g.str("kafka.sasl.mechanism", "", "plain", "scram-sha-256", "scram-sha-512"),
			Username:     g.str("kafka.sasl.username"),
			Password:     g.str("kafka.sasl.password"),
			PasswordFile: g.str("kafka.sasl.password_file"),
		},
		Spool: Spool{
			Dir:          g.str("kafka.spool.dir"),
			MaxBytes:     g.integer("kafka.spool.max_bytes", 1<<20, 1<<50),
			SegmentBytes: g.integer("kafka.spool.segment_bytes", 1<<16, 1<<40),
			FullPolicy:   g.str("kafka.spool.full_policy", "drop_newest", "drop_oldest"),
			SyncInterval: g.duration("kafka.spool.sync_interval", 0),
		},
		DeadLetter:    g.str("kafka.dead_letter"),
		DeadLetterMax: g.integer("kafka.dead_letter_max_bytes", 4096, 1<<40),
	}
	c.Metrics = Metrics{Listen: g.str("metrics.listen")}
	c.Output = Output{
		Raw:           g.boolean("output.raw"),
		FlushInterval: g.duration("output.flush_interval", time.Millisecond),
	}
	sink := g.str("output.sink")
	if g.err != nil {
		return nil, g.err
	}
	switch {
	case sink == "" && len(c.Kafka.Brokers) > 0:
		c.Output.Kind = "kafka"
	case sink == "" || sink == "stdout":
		c.Output.Kind = "stdout"
	case sink == "kafka":
		c.Output.Kind = "kafka"
		if len(c.Kafka.Brokers) == 0 {
			return nil, errors.New("output.sink: kafka needs kafka.brokers (flag --kafka-brokers, env AUDITNS_KAFKA_BROKERS)")
		}
	case strings.HasPrefix(sink, "file:") && len(sink) > len("file:"):
		c.Output.Kind, c.Output.Path = "file", strings.TrimPrefix(sink, "file:")
	default:
		g.fail("output.sink", "stdout, file:PATH or kafka")
		return nil, g.err
	}
	if c.Kafka.SASL.Mechanism != "" && c.Kafka.SASL.Username == "" {
		return nil, errors.New("kafka.sasl.username: expected a user name when kafka.sasl.mechanism is set")
	}
	if c.Mode == "multicast" && c.Audit.Immutable {
		return nil, errors.New("audit.immutable: multicast mode cannot change kernel settings; set mode: unicast")
	}
	if c.Kafka.Spool.Dir == "" {
		c.Kafka.Spool.Dir = c.StateDir + "/spool"
	}
	if c.HostName == "" {
		c.HostName, _ = os.Hostname()
	}
	return c, nil
}
