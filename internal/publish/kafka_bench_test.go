package publish

// Benchmarks against the real broker. Suggested runs:
//
//	go test ./internal/publish -run '^$' -bench KafkaThroughput -benchtime 200000x
//	go test ./internal/publish -run '^$' -bench KafkaLatency -benchtime 50000x

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/auditns/auditns/internal/testenv"
)

// benchValue returns a JSON object of exactly size bytes that looks like an
// audit event (random ids, so that lz4 does not make it look free).
func benchValue(seq, size int) []byte {
	var r [16]byte
	rand.Read(r[:])
	v := fmt.Appendf(nil, `{"schema":"auditns.event/1","event":{"id":"55b0d7d6-6d0b-4a38-9c3a-2d1e5f0c9a11:%d","sequence":%d,`+
		`"kind":"event","category":["process"],"action":"executed","outcome":"success","type":"SYSCALL"},`+
		`"host":{"name":"web-1","boot":{"id":"55b0d7d6-6d0b-4a38-9c3a-2d1e5f0c9a11"}},"process":{"pid":%d,`+
		`"executable":"/usr/bin/unshare","args":["unshare","-n","%s"]},"user":{"id":"0"},"ns":{"net":{"serial":13,"inum":4026532177}},"pad":"`,
		seq, seq, 1000+seq%30000, hex.EncodeToString(r[:]))
	for len(v) < size-2 {
		v = append(v, 'a'+byte(seq%26))
	}
	return append(v, '"', '}')
}

func benchMessages(n, size int, key func(int) []byte) []Message {
	msgs := make([]Message, n)
	for i := range msgs {
		msgs[i] = Message{Topic: TopicEvents, Key: key(i), Value: benchValue(i, size),
			ID: fmt.Sprintf("55b0d7d6-6d0b-4a38-9c3a-2d1e5f0c9a11:%d", i), Schema: "auditns.event/1",
			BootID: "55b0d7d6-6d0b-4a38-9c3a-2d1e5f0c9a11"}
	}
	return msgs
}

// processCPU is the user+system CPU time the process has used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func waitAcked(b *testing.B, k *Kafka, n int64) {
	for k.Stats().Acked < n {
		time.Sleep(200 * time.Microsecond)
	}
}

// Write + delivery of 600-byte messages, as fast as the broker takes them.
func BenchmarkKafkaThroughput(b *testing.B) {
	brokers := testenv.KafkaBrokers(b)
	for _, bc := range []struct {
		name string
		key  func(int) []byte
	}{
		{"key=host", func(int) []byte { return []byte("web-1") }},               // one partition
		{"key=event", func(i int) []byte { return fmt.Appendf(nil, "e%d", i) }}, // all three
	} {
		b.Run(bc.name, func(b *testing.B) {
			o := testKafkaOptions(b, brokers, b.TempDir())
			o.Logger = discardLogger()
			k := openKafka(b, o)
			defer closeKafka(b, k, time.Minute)
			msgs := benchMessages(10000, 600, bc.key)
			now := time.Now()
			for i := range msgs {
				msgs[i].Time = now
			}
			b.SetBytes(600)
			b.ResetTimer()
			start := time.Now()
			cpu0 := processCPU()
			for i := 0; i < b.N; i += 100 {
				j := i % len(msgs)
				if _, err := k.Write(msgs[j:min(j+100, j+b.N-i, len(msgs))]); err != nil {
					b.Fatal(err)
				}
			}
			waitAcked(b, k, int64(b.N))
			el := time.Since(start)
			cpu := processCPU() - cpu0
			b.StopTimer()
			b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/msg")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// Latency from Write to the broker's acknowledgement, and the process's CPU
// time per message, at a steady 5,000 or 10,000 messages/s (600 bytes,
// key=host, written every millisecond), for a few BatchTimeout settings.
func BenchmarkKafkaLatency(b *testing.B) {
	brokers := testenv.KafkaBrokers(b)
	for _, bc := range []struct {
		rate int
		bt   time.Duration
	}{{5000, 10 * time.Millisecond}, {5000, 2 * time.Millisecond}, {10000, 10 * time.Millisecond}} {
		rate, bt := bc.rate, bc.bt
		b.Run(fmt.Sprintf("rate=%d/batch_timeout=%v", rate, bt), func(b *testing.B) {
			o := testKafkaOptions(b, brokers, b.TempDir())
			o.Logger = discardLogger()
			o.BatchTimeout = bt
			var mu sync.Mutex
			lats := make([]time.Duration, 0, b.N)
			o.ObserveLatency = func(d time.Duration) { mu.Lock(); lats = append(lats, d); mu.Unlock() }
			k := openKafka(b, o)
			defer closeKafka(b, k, time.Minute)
			msgs := benchMessages(10000, 600, func(int) []byte { return []byte("web-1") })

			// Warm up (topic leaders, connections).
			k.Write(msgs[:10])
			waitAcked(b, k, 10)
			mu.Lock()
			lats = lats[:0]
			mu.Unlock()

			b.ResetTimer()
			t0 := time.Now()
			cpu0 := processCPU()
			sent := 0
			tick := time.NewTicker(time.Millisecond)
			for sent < b.N {
				<-tick.C
				due := min(int(time.Since(t0).Seconds()*float64(rate)), b.N) - sent
				if due <= 0 {
					continue
				}
				batch := slices.Clone(msgs[sent%len(msgs) : sent%len(msgs)+min(due, len(msgs)-sent%len(msgs))])
				now := time.Now()
				for i := range batch {
					batch[i].Time = now
				}
				if _, err := k.Write(batch); err != nil {
					b.Fatal(err)
				}
				sent += len(batch)
			}
			tick.Stop()
			waitAcked(b, k, int64(b.N)+10)
			cpu := processCPU() - cpu0
			b.StopTimer()

			mu.Lock()
			slices.Sort(lats)
			q := func(p float64) float64 { return float64(lats[int(p*float64(len(lats)-1))]) / 1e6 }
			b.ReportMetric(q(0.50), "p50-ms")
			b.ReportMetric(q(0.90), "p90-ms")
			b.ReportMetric(q(0.99), "p99-ms")
			b.ReportMetric(q(1), "max-ms")
			b.ReportMetric(float64(sent)/time.Since(t0).Seconds(), "msgs/s")
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/msg")
			b.ReportMetric(0, "ns/op")
			mu.Unlock()
		})
	}
}
