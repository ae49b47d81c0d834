package publish

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/auditns/auditns/internal/spool"
)

func validKafkaOptions(t *testing.T) KafkaOptions {
	o := DefaultKafkaOptions()
	o.Brokers = []string{"127.0.0.1:19092"}
	o.Spool.Dir = t.TempDir()
	return o
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestKafkaOptionsDefaults(t *testing.T) {
	o := KafkaOptions{Brokers: []string{"kafka-1:9092", " kafka-2:9093 "}, Spool: spool.Options{Dir: "/var/lib/auditns/spool"}}
	c, err := o.validate(discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	got := c.opts
	if got.EventsTopic != "auditns.events" || got.NamespacesTopic != "auditns.namespaces" ||
		got.Partitions != 3 || got.ReplicationFactor != 0 || got.Compression != "lz4" ||
		got.BatchTimeout != 10*time.Millisecond || got.BatchSize != 1000 || got.BatchBytes != 1<<20 ||
		got.WriteTimeout != 10*time.Second || got.DeadLetterPath != "/var/lib/auditns/spool/deadletter.jsonl" {
		t.Errorf("defaults not applied: %+v", got)
	}
	if got.Brokers[1] != "kafka-2:9093" {
		t.Errorf("broker not trimmed: %q", got.Brokers[1])
	}
	if c.tls != nil || c.sasl != nil {
		t.Errorf("TLS/SASL configured by default")
	}
	if d := DefaultKafkaOptions(); !d.CreateTopics || d.TLS.InsecureSkipVerify {
		t.Errorf("DefaultKafkaOptions: CreateTopics %v InsecureSkipVerify %v", d.CreateTopics, d.TLS.InsecureSkipVerify)
	}
}

func TestKafkaOptionsErrorsNameTheKey(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.txt")
	os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600)
	pwEmpty := filepath.Join(dir, "pw-empty")
	os.WriteFile(pwEmpty, []byte("\n"), 0o600)

	cases := []struct {
		key string
		mod func(*KafkaOptions)
	}{
		{"kafka.brokers", func(o *KafkaOptions) { o.Brokers = nil }},
		{"kafka.brokers", func(o *KafkaOptions) { o.Brokers = []string{"localhost"} }},
		{"kafka.brokers", func(o *KafkaOptions) { o.Brokers = []string{"localhost:0"} }},
		{"kafka.brokers", func(o *KafkaOptions) { o.Brokers = []string{":9092"} }},
		{"kafka.topic", func(o *KafkaOptions) { o.EventsTopic = "audit events" }},
		{"kafka.topic", func(o *KafkaOptions) { o.EventsTopic = ".." }},
		{"kafka.namespaces_topic", func(o *KafkaOptions) { o.NamespacesTopic = strings.Repeat("n", 250) }},
		{"kafka.namespaces_topic", func(o *KafkaOptions) { o.NamespacesTopic = o.EventsTopic }},
		{"kafka.partitions", func(o *KafkaOptions) { o.Partitions = -1 }},
		{"kafka.replication_factor", func(o *KafkaOptions) { o.ReplicationFactor = -3 }},
		{"kafka.topic_config.retention", func(o *KafkaOptions) { o.Retention = time.Minute }},
		{"kafka.topic_config.min_insync_replicas", func(o *KafkaOptions) { o.MinInsyncReplicas = -1 }},
		{"kafka.topic_config.min_insync_replicas", func(o *KafkaOptions) { o.ReplicationFactor = 2; o.MinInsyncReplicas = 3 }},
		{"kafka.dead_letter_max_bytes", func(o *KafkaOptions) { o.DeadLetterMaxBytes = 100 }},
		{"kafka.compression", func(o *KafkaOptions) { o.Compression = "brotli" }},
		{"kafka.batch_timeout", func(o *KafkaOptions) { o.BatchTimeout = -time.Second }},
		{"kafka.batch_size", func(o *KafkaOptions) { o.BatchSize = -1 }},
		{"kafka.batch_bytes", func(o *KafkaOptions) { o.BatchBytes = 10 }},
		{"kafka.write_timeout", func(o *KafkaOptions) { o.WriteTimeout = time.Millisecond }},
		{"kafka.spool.dir", func(o *KafkaOptions) { o.Spool.Dir = "" }},
		{"kafka.tls.ca_file", func(o *KafkaOptions) { o.TLS.Enabled = true; o.TLS.CAFile = filepath.Join(dir, "missing.pem") }},
		{"kafka.tls.ca_file", func(o *KafkaOptions) { o.TLS.Enabled = true; o.TLS.CAFile = notPEM }},
		{"kafka.tls.ca_file", func(o *KafkaOptions) { o.TLS.CAFile = notPEM }}, // TLS off
		{"kafka.tls.insecure_skip_verify", func(o *KafkaOptions) { o.TLS.InsecureSkipVerify = true }},
		{"kafka.tls.key_file", func(o *KafkaOptions) { o.TLS.Enabled = true; o.TLS.CertFile = notPEM }},
		{"kafka.tls.cert_file", func(o *KafkaOptions) { o.TLS.Enabled = true; o.TLS.KeyFile = notPEM }},
		{"kafka.tls.cert_file", func(o *KafkaOptions) { o.TLS.Enabled = true; o.TLS.CertFile = notPEM; o.TLS.KeyFile = notPEM }},
		{"kafka.tls.key_file", func(o *KafkaOptions) {
			o.TLS.Enabled = true
			o.TLS.CertFile = notPEM
			o.TLS.KeyFile = filepath.Join(dir, "missing.key")
		}},
		{"kafka.sasl.mechanism", func(o *KafkaOptions) { o.SASL = KafkaSASL{Mechanism: "gssapi", Username: "u", Password: "p"} }},
		{"kafka.sasl.username", func(o *KafkaOptions) { o.SASL = KafkaSASL{Mechanism: "plain", Password: "p"} }},
		{"kafka.sasl.username", func(o *KafkaOptions) { o.SASL = KafkaSASL{Username: "u"} }}, // no mechanism
		{"kafka.sasl.password", func(o *KafkaOptions) { o.SASL = KafkaSASL{Mechanism: "scram-sha-256", Username: "u"} }},
		{"kafka.sasl.password_file", func(o *KafkaOptions) {
			o.SASL = KafkaSASL{Mechanism: "scram-sha-512", Username: "u", Password: "p", PasswordFile: pwEmpty}
		}},
		{"kafka.sasl.password_file", func(o *KafkaOptions) {
			o.SASL = KafkaSASL{Mechanism: "plain", Username: "u", PasswordFile: filepath.Join(dir, "nope")}
		}},
		{"kafka.sasl.password_file", func(o *KafkaOptions) { o.SASL = KafkaSASL{Mechanism: "plain", Username: "u", PasswordFile: pwEmpty} }},
	}
	for _, c := range cases {
		o := validKafkaOptions(t)
		c.mod(&o)
		_, err := o.validate(discardLogger())
		if err == nil {
			t.Errorf("%s: no error for %+v", c.key, o)
			continue
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, c.key+": ") {
			t.Errorf("error does not start with %q: %s", c.key+": ", msg)
		}
		if strings.Contains(msg, "\n") {
			t.Errorf("error is not one line: %q", msg)
		}
		// NewKafka reports the same error, before touching the spool.
		if _, err := NewKafka(context.Background(), o); err == nil || err.Error() != msg {
			t.Errorf("NewKafka: %v, want %s", err, msg)
		}
	}
}

// writeTestPKI writes a self-signed CA certificate and a key, PEM.
func writeTestPKI(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "auditns test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	return certFile, keyFile
}

func TestKafkaTLSConfig(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeTestPKI(t, dir)
	o := validKafkaOptions(t)
	o.TLS = KafkaTLS{Enabled: true, CAFile: cert, CertFile: cert, KeyFile: key, ServerName: "kafka.example"}
	c, err := o.validate(discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	if c.tls == nil || c.tls.RootCAs == nil || len(c.tls.Certificates) != 1 || c.tls.ServerName != "kafka.example" ||
		c.tls.InsecureSkipVerify || c.tls.MinVersion < 0x0303 {
		t.Errorf("tls.Config = %+v", c.tls)
	}

	// Verification stays on unless asked, and turning it off is logged.
	var logBuf bytes.Buffer
	o.TLS = KafkaTLS{Enabled: true, InsecureSkipVerify: true}
	c, err = o.validate(slog.New(slog.NewTextHandler(&logBuf, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if !c.tls.InsecureSkipVerify || c.tls.RootCAs != nil || !strings.Contains(logBuf.String(), "insecure_skip_verify") {
		t.Errorf("insecure: %+v, log %q", c.tls, logBuf.String())
	}
}

func TestKafkaSASLConfig(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	os.WriteFile(pwFile, []byte("s3cr3t-from-file\n"), 0o644) // too open: warned
	for _, mech := range []string{"plain", "SCRAM-SHA-256", "scram-sha-512"} {
		var logBuf bytes.Buffer
		log := slog.New(slog.NewTextHandler(&logBuf, nil))
		o := validKafkaOptions(t)
		o.SASL = KafkaSASL{Mechanism: mech, Username: "auditns", PasswordFile: pwFile}
		c, err := o.validate(log)
		if err != nil {
			t.Fatalf("%s: %v", mech, err)
		}
		if c.sasl == nil || !strings.EqualFold(c.sasl.Name(), mech) {
			t.Errorf("%s: mechanism %v", mech, c.sasl)
		}
		if c.opts.SASL.Password != "s3cr3t-from-file" {
			t.Errorf("%s: password from file not read/trimmed", mech)
		}
		if !strings.Contains(logBuf.String(), "readable by group or others") {
			t.Errorf("%s: no warning about the password file's mode: %q", mech, logBuf.String())
		}
		if mech == "plain" && !strings.Contains(logBuf.String(), "clear text") {
			t.Errorf("plain without TLS: no warning: %q", logBuf.String())
		}
	}
}

// The password appears nowhere: not in Name, not in fmt or slog output of
// the options, not in the sink's log.
func TestKafkaSecretsNeverPrinted(t *testing.T) {
	const secret = "hunter2-very-secret"
	o := validKafkaOptions(t)
	o.SASL = KafkaSASL{Mechanism: "scram-sha-512", Username: "auditns", Password: secret}
	var logBuf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	log.Info("options", "sasl", o.SASL, "opts", o, "nested", struct{ O KafkaOptions }{o})
	slog.New(slog.NewTextHandler(&logBuf, nil)).Info("options", "sasl", o.SASL, "opts", o, "nested", struct{ O KafkaOptions }{o})
	printed := fmt.Sprintf("%v %+v %#v %s %v", o.SASL, o.SASL, o.SASL, o.SASL, o)
	printed += fmt.Sprintf("%+v", o)
	if strings.Contains(printed, secret) || strings.Contains(logBuf.String(), secret) {
		t.Errorf("password printed:\n%s\n%s", printed, logBuf.String())
	}
	if !strings.Contains(printed, "[redacted]") {
		t.Errorf("redaction marker missing: %s", printed)
	}

	// A sink started against nothing listening: its Name and log lines.
	o.Brokers = []string{"127.0.0.1:1"}
	o.Logger = log
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	k, err := NewKafka(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	closeCtx, cancel2 := context.WithTimeout(context.Background(), time.Second)
	defer cancel2()
	k.Close(closeCtx)
	if strings.Contains(k.Name(), secret) || strings.Contains(logBuf.String(), secret) {
		t.Errorf("password in Name %q or log:\n%s", k.Name(), logBuf.String())
	}
	if !strings.Contains(k.Name(), "sasl=scram-sha-512") {
		t.Errorf("Name = %q", k.Name())
	}
}

// With no broker, Write stays fast, Close returns by its deadline, and what
// was written stays in the spool for the next start.
func TestKafkaCloseBrokerDown(t *testing.T) {
	o := validKafkaOptions(t)
	o.Brokers = []string{"127.0.0.1:1"} // nothing listens
	o.Logger = discardLogger()
	var states stateLog
	o.OnState = states.on
	k, err := NewKafka(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []Message
	for i := range 500 {
		msgs = append(msgs, testMessage("host-a", i, time.Now(), 100))
	}
	start := time.Now()
	for i := 0; i < len(msgs); i += 50 {
		if dropped, err := k.Write(msgs[i : i+50]); err != nil || dropped != 0 {
			t.Fatalf("Write: %d %v", dropped, err)
		}
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("10 Writes took %v with the broker down", d)
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if calls, _ := states.count("state"); calls > 0 {
			break
		}
	}
	if st := k.Stats(); !st.Failing || st.Errors == 0 || st.Spool.Records != 500 {
		t.Errorf("stats %+v: want failing, errors, 500 spooled", st)
	}
	if calls, _ := states.count("state"); calls != 1 {
		t.Errorf("OnState: %+v, want one state call", states.calls)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start = time.Now()
	k.Close(ctx)
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v with a 500ms deadline", d)
	}
	if _, err := k.Write(msgs[:1]); !errors.Is(err, ErrSinkClosed) {
		t.Errorf("Write after Close: %v", err)
	}

	s, err := spool.Open(spool.Options{Dir: o.Spool.Dir, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got := 0
	for got < 500 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		recs, err := s.Next(ctx, 1000, 0)
		cancel()
		if err != nil {
			t.Fatalf("after %d records: %v", got, err)
		}
		for _, r := range recs {
			m, err := decodeKafkaRecord(r.Data)
			if err != nil || m.ID != msgs[got].ID || string(m.Value) != string(msgs[got].Value) {
				t.Fatalf("record %d: %+v %v", got, m, err)
			}
			got++
		}
	}
}
