package publish

// SASL and TLS against a real broker: the test starts a second, private
// broker from the jars that scripts/kafka/start.sh resolved (its cache dir),
// with a SASL_PLAINTEXT listener (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) and a
// SASL_SSL listener whose certificate the test issues. The broker is the
// test process's child and is stopped when the test ends.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/auditns/auditns/internal/testenv"
	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl/plain"
)

const (
	secureUser     = "auditns"
	securePassword = "s3cret-Pa55-for-tests"
)

// testCA is a throw-away CA that issues a server certificate.
type testCA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
}

func newTestCA(t testing.TB, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a PEM file body with a PKCS#8 key and the certificate chain
// for 127.0.0.1 and "kafka.test".
func (ca *testCA) issue(t testing.TB) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "kafka.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"kafka.test"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	p8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	pem.Encode(&b, &pem.Block{Type: "PRIVATE KEY", Bytes: p8})
	pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	b.Write(ca.certPEM)
	return b.Bytes()
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// secureBroker is a private SASL/TLS broker.
type secureBroker struct {
	saslPlain string // SASL_PLAINTEXT host:port
	saslSSL   string // SASL_SSL host:port
	caFile    string
}

// startSecureBroker starts the private broker and stops it when t ends.
func startSecureBroker(t *testing.T, ca *testCA) *secureBroker {
	t.Helper()
	testenv.KafkaBrokers(t) // the shared broker's presence says the jars are there
	dir := os.Getenv("KAFKA_CACHE_DIR")
	if dir == "" {
		_, file, _, _ := runtime.Caller(0)
		dir = filepath.Join(filepath.Dir(file), "..", "..", ".cache", "kafka")
	}
	lib := filepath.Join(dir, "lib")
	if _, err := os.Stat(filepath.Join(lib)); err != nil {
		testenv.Missing(t, testenv.RequireKafkaVar, fmt.Sprintf("no broker classpath in %s (run scripts/kafka/start.sh once): %v", lib, err))
	}
	java, err := exec.LookPath("java")
	if err != nil {
		testenv.Missing(t, testenv.RequireKafkaVar, fmt.Sprintf("java not found: %v", err))
	}

	work := t.TempDir()
	caFile := filepath.Join(work, "ca.pem")
	keystore := filepath.Join(work, "server.pem")
	os.WriteFile(caFile, ca.certPEM, 0o600)
	os.WriteFile(keystore, ca.issue(t), 0o600)

	pPlain, pSSL, pInternal, pCtl := freePort(t), freePort(t), freePort(t), freePort(t)
	jaasPlain := fmt.Sprintf(`org.apache.kafka.common.security.plain.PlainLoginModule required user_%s="%s";`, secureUser, securePassword)
	jaasScram := `org.apache.kafka.common.security.scram.ScramLoginModule required;`
	var props strings.Builder
	fmt.Fprintf(&props, `process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:%[4]d
listeners=SASL_PLAINTEXT://127.0.0.1:%[1]d,SASL_SSL://127.0.0.1:%[2]d,INTERNAL://127.0.0.1:%[3]d,CONTROLLER://127.0.0.1:%[4]d
advertised.listeners=SASL_PLAINTEXT://127.0.0.1:%[1]d,SASL_SSL://127.0.0.1:%[2]d,INTERNAL://127.0.0.1:%[3]d
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL
inter.broker.listener.name=INTERNAL
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
ssl.keystore.type=PEM
ssl.keystore.location=%[5]s
log.dirs=%[6]s
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
`, pPlain, pSSL, pInternal, pCtl, keystore, filepath.Join(work, "data"))
	for _, l := range []string{"sasl_plaintext", "sasl_ssl"} {
		fmt.Fprintf(&props, "listener.name.%s.plain.sasl.jaas.config=%s\n", l, jaasPlain)
		fmt.Fprintf(&props, "listener.name.%s.scram-sha-256.sasl.jaas.config=%s\n", l, jaasScram)
		fmt.Fprintf(&props, "listener.name.%s.scram-sha-512.sasl.jaas.config=%s\n", l, jaasScram)
	}
	propsFile := filepath.Join(work, "server.properties")
	os.WriteFile(propsFile, []byte(props.String()), 0o600)
	log4j := filepath.Join(work, "log4j2.xml")
	os.WriteFile(log4j, []byte(`<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN"><Appenders>
<File name="file" fileName="`+filepath.Join(work, "server.log")+`"><PatternLayout pattern="[%d] %p %m (%c)%n"/></File>
</Appenders><Loggers><Root level="INFO"><AppenderRef ref="file"/></Root></Loggers></Configuration>
`), 0o600)

	cp := filepath.Join(lib, "*")
	jvm := []string{"-Dlog4j2.configurationFile=" + log4j, "-cp", cp}
	scram := fmt.Sprintf("[name=%s,password=%s]", secureUser, securePassword)
	format := exec.Command(java, append(jvm, "kafka.tools.StorageTool", "format", "-t", "c2VjdXJlLXRlc3QtY2x1c3Rlcg", "-c", propsFile,
		"--add-scram", "SCRAM-SHA-256="+scram, "--add-scram", "SCRAM-SHA-512="+scram)...)
	if out, err := format.CombinedOutput(); err != nil {
		t.Fatalf("StorageTool format: %v\n%s", err, out)
	}

	out, _ := os.Create(filepath.Join(work, "kafka.out"))
	cmd := exec.Command(java, append([]string{"-Xms256m", "-Xmx512m", "-XX:+UseG1GC", "-Djava.awt.headless=true"},
		append(jvm, "kafka.Kafka", propsFile)...)...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the test binary
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); out.Close(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})

	b := &secureBroker{
		saslPlain: fmt.Sprintf("127.0.0.1:%d", pPlain),
		saslSSL:   fmt.Sprintf("127.0.0.1:%d", pSSL),
		caFile:    caFile,
	}
	// Ready when a PLAIN-authenticated Metadata request answers.
	tr := &kafka.Transport{SASL: plain.Mechanism{Username: secureUser, Password: securePassword}}
	defer tr.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(b.saslPlain), Transport: tr, Timeout: 2 * time.Second}
	deadline := time.Now().Add(90 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		md, err := client.Metadata(ctx, &kafka.MetadataRequest{})
		cancel()
		if err == nil && len(md.Brokers) > 0 {
			break
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(work, "server.log"))
			t.Fatalf("secure broker exited: %s", tail(log, 3000))
		default:
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(work, "server.log"))
			t.Fatalf("secure broker not ready: %v\n%s", err, tail(log, 3000))
		}
		time.Sleep(250 * time.Millisecond)
	}
	return b
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func TestKafkaSASLAndTLS(t *testing.T) {
	ca := newTestCA(t, "auditns test CA")
	b := startSecureBroker(t, ca)
	otherCA := filepath.Join(t.TempDir(), "other-ca.pem")
	os.WriteFile(otherCA, newTestCA(t, "some other CA").certPEM, 0o600)

	// deliverable: the sink authenticates, delivers and reads back.
	deliverable := func(t *testing.T, o KafkaOptions) {
		k := openKafka(t, o)
		t0 := time.Now()
		var msgs []Message
		for i := range 50 {
			msgs = append(msgs, testMessage("host-a", i, t0, 100))
		}
		if _, err := k.Write(msgs); err != nil {
			t.Fatal(err)
		}
		closeKafka(t, k, 60*time.Second)
		if st := k.Stats(); st.Published != 50 {
			t.Fatalf("published %d, want 50", st.Published)
		}
	}
	// refused: the sink starts, spools, reports failing, and keeps
	// everything; the log holds no password.
	refused := func(t *testing.T, o KafkaOptions, wantInLog string) {
		var logBuf testenv.Buffer
		o.Logger = slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
		var states stateLog
		o.OnState = states.on
		k := openKafka(t, o)
		if _, err := k.Write([]Message{testMessage("host-a", 0, time.Now(), 10)}); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if calls, _ := states.count("state"); calls > 0 {
				break
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		k.Close(ctx)
		st := k.Stats()
		log := logBuf.String()
		if !st.Failing || st.Published != 0 || st.Spool.Records != 1 {
			t.Errorf("stats %+v: want failing, nothing published, 1 spooled", st)
		}
		if !strings.Contains(log, wantInLog) {
			t.Errorf("log lacks %q:\n%s", wantInLog, log)
		}
		if strings.Contains(log, securePassword) || strings.Contains(log, "wrong-"+securePassword) {
			t.Errorf("password in the log:\n%s", log)
		}
		t.Logf("refused as expected: %s", firstLine(log, wantInLog))
	}

	opts := func(t *testing.T, addr string) KafkaOptions {
		o := testKafkaOptions(t, addr, t.TempDir())
		return o
	}
	for _, mech := range []string{"plain", "scram-sha-256", "scram-sha-512"} {
		t.Run("sasl_plaintext/"+mech, func(t *testing.T) {
			o := opts(t, b.saslPlain)
			o.SASL = KafkaSASL{Mechanism: mech, Username: secureUser, Password: securePassword}
			deliverable(t, o)
		})
		t.Run("sasl_plaintext/"+mech+"/wrong-password", func(t *testing.T) {
			o := opts(t, b.saslPlain)
			o.SASL = KafkaSASL{Mechanism: mech, Username: secureUser, Password: "wrong-" + securePassword}
			refused(t, o, "Authentication")
		})
	}
	t.Run("sasl_ssl/scram-sha-512", func(t *testing.T) {
		o := opts(t, b.saslSSL)
		o.TLS = KafkaTLS{Enabled: true, CAFile: b.caFile}
		pw := filepath.Join(t.TempDir(), "pw")
		os.WriteFile(pw, []byte(securePassword+"\n"), 0o600)
		o.SASL = KafkaSASL{Mechanism: "scram-sha-512", Username: secureUser, PasswordFile: pw}
		deliverable(t, o)
	})
	t.Run("sasl_ssl/plain/server_name", func(t *testing.T) {
		o := opts(t, b.saslSSL)
		o.TLS = KafkaTLS{Enabled: true, CAFile: b.caFile, ServerName: "kafka.test"}
		o.SASL = KafkaSASL{Mechanism: "plain", Username: secureUser, Password: securePassword}
		deliverable(t, o)
	})
	t.Run("sasl_ssl/unknown-ca", func(t *testing.T) {
		o := opts(t, b.saslSSL)
		o.TLS = KafkaTLS{Enabled: true, CAFile: otherCA}
		o.SASL = KafkaSASL{Mechanism: "scram-sha-256", Username: secureUser, Password: securePassword}
		refused(t, o, "certificate signed by unknown authority")
	})
	t.Run("sasl_ssl/wrong-server-name", func(t *testing.T) {
		o := opts(t, b.saslSSL)
		o.TLS = KafkaTLS{Enabled: true, CAFile: b.caFile, ServerName: "not-kafka.test"}
		o.SASL = KafkaSASL{Mechanism: "scram-sha-256", Username: secureUser, Password: securePassword}
		refused(t, o, "not-kafka.test")
	})
	t.Run("sasl_ssl/insecure-skip-verify", func(t *testing.T) {
		o := opts(t, b.saslSSL)
		o.TLS = KafkaTLS{Enabled: true, CAFile: otherCA, InsecureSkipVerify: true}
		o.SASL = KafkaSASL{Mechanism: "scram-sha-256", Username: secureUser, Password: securePassword}
		deliverable(t, o)
	})
}

func firstLine(log, sub string) string {
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}
