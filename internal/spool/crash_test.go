package spool

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	crashDirEnv   = "AUDITNS_SPOOL_CRASH_DIR"
	crashStartEnv = "AUDITNS_SPOOL_CRASH_START"
	crashSlowEnv  = "AUDITNS_SPOOL_CRASH_SLOW"
)

func crashOpts(dir string) Options {
	return Options{Dir: dir, SegmentBytes: 32 << 10, MemoryBytes: 64 << 10,
		SyncInterval: 2 * time.Millisecond, CheckpointInterval: time.Millisecond}
}

// TestSpoolCrashChild is the process TestSpoolCrashKill9 kills: it appends
// records start, start+1, ... and reports "A <last>" after every Append that
// returned, while a forwarder reads, sometimes rewinds, and acknowledges
// (reporting "K <last>" just before each Ack). It runs until it is killed.
func TestSpoolCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("helper process for TestSpoolCrashKill9")
	}
	start, _ := strconv.Atoi(os.Getenv(crashStartEnv))
	slow := os.Getenv(crashSlowEnv) == "1" // a forwarder that falls behind
	s, err := Open(crashOpts(dir))
	if err != nil {
		fmt.Printf("E open: %v\n", err)
		os.Exit(2)
	}
	go func() {
		rng := rand.New(rand.NewPCG(uint64(start), 1))
		for n := start; ; {
			k := 1 + rng.IntN(32)
			if d, err := s.Append(batch(n, k)); err != nil || d != 0 {
				fmt.Printf("E append: %d %v\n", d, err)
				os.Exit(2)
			}
			n += k
			fmt.Printf("A %d\n", n-1) // one write(2) per line
			if rng.IntN(4) == 0 {
				time.Sleep(time.Duration(rng.IntN(500)) * time.Microsecond)
			}
		}
	}()
	go func() {
		rng := rand.New(rand.NewPCG(uint64(start), 2))
		last, acked := -1, -1
		for {
			if slow {
				time.Sleep(2 * time.Millisecond)
			}
			recs, err := s.Next(context.Background(), 1+rng.IntN(100), 1+rng.IntN(32<<10))
			if err != nil {
				fmt.Printf("E next: %v\n", err)
				os.Exit(2)
			}
			for _, r := range recs {
				n, err := strconv.Atoi(string(r.Data[1:8]))
				if err != nil || (last >= 0 && n != last+1) {
					fmt.Printf("X read %q after %d\n", r.Data[:9], last)
					os.Exit(2)
				}
				last = n
			}
			if rng.IntN(8) == 0 {
				s.Rewind()
				last = acked
				continue
			}
			// Announce before acknowledging: the ack may be durable
			// before the process is killed.
			fmt.Printf("K %d\n", last)
			if err := s.Ack(recs[len(recs)-1].Pos); err != nil {
				fmt.Printf("E ack: %v\n", err)
				os.Exit(2)
			}
			acked = last
		}
	}()
	time.Sleep(30 * time.Second) // never reached: the parent kills us
	os.Exit(3)
}

// TestSpoolCrashKill9 SIGKILLs a process that appends and forwards, then
// reopens the spool: every record Append returned for is there, in order,
// from at most just after the last acknowledged record (at-least-once), and
// the next process continues after it. Several rounds.
func TestSpoolCrashKill9(t *testing.T) {
	dir := t.TempDir()
	start, prevFirst := 0, 0
	rng := rand.New(rand.NewPCG(42, 42))
	for round := range 6 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSpoolCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashStartEnv+"="+strconv.Itoa(start),
			fmt.Sprintf("%s=%d", crashSlowEnv, round%2))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 1024)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		lastA, lastK := -1, -1
		parse := func(l string) {
			switch {
			case strings.HasPrefix(l, "A "):
				lastA, _ = strconv.Atoi(l[2:])
			case strings.HasPrefix(l, "K "):
				lastK, _ = strconv.Atoi(l[2:])
			case strings.HasPrefix(l, "PASS"), strings.HasPrefix(l, "ok"), strings.HasPrefix(l, "=== RUN"):
			default:
				t.Errorf("round %d: child said %q", round, l)
			}
		}
		// Let it run a random while once it is appending, then kill -9.
		killAt := time.Duration(20+rng.IntN(150)) * time.Millisecond
		timeout := time.After(20 * time.Second)
		var killTimer <-chan time.Time
	run:
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					break run
				}
				parse(l)
				if killTimer == nil && lastA >= 0 {
					killTimer = time.After(killAt)
				}
			case <-killTimer:
				cmd.Process.Kill() // SIGKILL
				killTimer = nil
			case <-timeout:
				cmd.Process.Kill()
				t.Fatalf("round %d: child did not start appending", round)
			}
		}
		err = cmd.Wait()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != -1 {
			t.Fatalf("round %d: child ended with %v, not by SIGKILL", round, err)
		}
		if lastA < start {
			t.Fatalf("round %d: child appended nothing", round)
		}

		s, lb := openTestSpool(t, crashOpts(dir))
		recs := drain(t, s, 1000, 1<<20)
		if len(recs) == 0 {
			// Only right if everything was acknowledged durably.
			if lastK < lastA {
				t.Fatalf("round %d: nothing recovered, but appended up to %d and acknowledged only up to %d", round, lastA, lastK)
			}
			t.Logf("round %d: everything (up to %d) was acknowledged", round, lastK)
			s.Close()
			start, prevFirst = lastK+1, lastK+1
			continue
		}
		first := seqOf(t, recs[0].Data)
		last := first + len(recs) - 1
		checkRun(t, recs, first, last)
		bound := prevFirst
		if lastK >= 0 {
			bound = lastK + 1
		}
		if first > bound || first < prevFirst {
			t.Fatalf("round %d: redelivery starts at %d; acknowledged up to %d, previous start %d", round, first, lastK, prevFirst)
		}
		if last < lastA {
			t.Fatalf("round %d: recovered up to %d, but Append returned for up to %d", round, last, lastA)
		}
		t.Logf("round %d: killed after %v; appended ≥%d (reported %d), acked %d; redelivered %d..%d (%d records, %d segments); %d warnings",
			round, killAt, last, lastA, lastK, first, last, len(recs), s.Stats().Segments, len(lb.lines("WARN")))
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		start, prevFirst = last+1, first
	}
}
