package spool

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"
)

const (
	benchBatch  = 64
	benchRecLen = 600
)

func benchRecords() [][]byte {
	b := make([][]byte, benchBatch)
	for i := range b {
		b[i] = bytes.Repeat([]byte{byte('a' + i%26)}, benchRecLen)
	}
	return b
}

func benchSpool(b *testing.B, o Options) *Spool {
	b.Helper()
	o.Dir = b.TempDir()
	o.Logger = slog.New(slog.DiscardHandler)
	s, err := Open(o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

func reportRecords(b *testing.B, records int) {
	b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkSpoolAppend: batches of 64 × 600-byte records (the pipeline's
// writer), with the daemon's 50ms group fsync and with an fsync per Append.
// What was appended is acknowledged every 1024 batches so the disk stays
// bounded (segment deletion runs in the background).
func BenchmarkSpoolAppend(b *testing.B) {
	for _, bc := range []struct {
		name string
		sync time.Duration
	}{{"group-fsync-50ms", DefaultSyncInterval}, {"fsync-every-append", 0}} {
		b.Run(bc.name, func(b *testing.B) {
			s := benchSpool(b, Options{SyncInterval: bc.sync})
			recs := benchRecords()
			b.SetBytes(benchBatch * benchRecLen)
			b.ReportAllocs()
			lat := make([]time.Duration, 0, 1<<20) // Append latency samples
			n := 0
			for b.Loop() {
				t0 := time.Now()
				if d, err := s.Append(recs); err != nil || d != 0 {
					b.Fatal(d, err)
				}
				if len(lat) < cap(lat) {
					lat = append(lat, time.Since(t0))
				}
				if n++; n%1024 == 0 {
					s.Ack(s.writePosForTest())
				}
			}
			reportRecords(b, n*benchBatch)
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			b.ReportMetric(float64(lat[len(lat)-1].Microseconds()), "max-µs")
		})
	}
}

// BenchmarkSpoolAppendNext: the append → read → acknowledge cycle. "memory"
// reads the in-memory tail (Kafka keeping up), "disk" reads the segment files
// (MemoryBytes < 0; from the page cache), "concurrent" has the writer and
// the forwarder in separate goroutines as in the daemon.
func BenchmarkSpoolAppendNext(b *testing.B) {
	for _, bc := range []struct {
		name string
		mem  int64
	}{{"memory", 0}, {"disk", -1}} {
		b.Run(bc.name, func(b *testing.B) {
			s := benchSpool(b, Options{SyncInterval: DefaultSyncInterval, MemoryBytes: bc.mem})
			recs := benchRecords()
			ctx := context.Background()
			b.SetBytes(benchBatch * benchRecLen)
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				if _, err := s.Append(recs); err != nil {
					b.Fatal(err)
				}
				for got := 0; got < benchBatch; {
					r, err := s.Next(ctx, benchBatch-got, 1<<20)
					if err != nil {
						b.Fatal(err)
					}
					got += len(r)
					if err := s.Ack(r[len(r)-1].Pos); err != nil {
						b.Fatal(err)
					}
				}
				n++
			}
			reportRecords(b, n*benchBatch)
		})
	}
	b.Run("concurrent", func(b *testing.B) {
		s := benchSpool(b, Options{SyncInterval: DefaultSyncInterval})
		recs := benchRecords()
		b.SetBytes(benchBatch * benchRecLen)
		b.ReportAllocs()
		b.ResetTimer()
		done := make(chan error, 1)
		total := b.N * benchBatch
		go func() {
			for got := 0; got < total; {
				r, err := s.Next(context.Background(), 1000, 1<<20)
				if err != nil {
					done <- err
					return
				}
				got += len(r)
				if err := s.Ack(r[len(r)-1].Pos); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
		for range b.N {
			if d, err := s.Append(recs); err != nil || d != 0 {
				b.Fatal(d, err)
			}
		}
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		reportRecords(b, total)
	})
}

// BenchmarkSpoolDrain: how fast a backlog of 64 MiB left by an outage is read
// back from the segment files (page cache) and acknowledged, 1000 records
// per Next.
func BenchmarkSpoolDrain(b *testing.B) {
	recs := benchRecords()
	const batches = 64 << 20 / (benchBatch * benchRecLen)
	b.SetBytes(batches * benchBatch * benchRecLen)
	for b.Loop() {
		b.StopTimer()
		s := benchSpool(b, Options{SyncInterval: time.Hour, MemoryBytes: -1})
		for range batches {
			s.Append(recs)
		}
		b.StartTimer()
		for got := 0; got < batches*benchBatch; {
			r, err := s.Next(context.Background(), 1000, 1<<20)
			if err != nil {
				b.Fatal(err)
			}
			got += len(r)
			s.Ack(r[len(r)-1].Pos)
		}
		b.StopTimer()
		s.Close()
		b.StartTimer()
	}
}
