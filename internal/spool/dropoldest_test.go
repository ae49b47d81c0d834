package spool

import (
	"bytes"
	"fmt"
	"strconv"
	"testing"
)

// fixedRec is record i: "r<7 digits>|" then filler, 100 bytes, so that a
// segment holds a known number of records.
func fixedRec(i int) []byte {
	b := fmt.Appendf(nil, "r%07d|", i)
	return append(b, bytes.Repeat([]byte{'z'}, 100-len(b))...)
}

func fixedNum(t testing.TB, d []byte) int {
	t.Helper()
	n, err := strconv.Atoi(string(d[1:8]))
	if err != nil {
		t.Fatalf("record %q: %v", d, err)
	}
	return n
}

// TestSpoolDropOldestKeepsReservedRecords: a spool at its cap under
// drop_oldest, with reserved records (loss events) among the oldest. After
// dropping, across a restart too, every reserved record is still read back,
// and the dropped count is exactly the ordinary records that are gone.
func TestSpoolDropOldestKeepsReservedRecords(t *testing.T) {
	frame := int64(frameHeaderSize + 100)
	dir := t.TempDir()
	opts := Options{Dir: dir, SegmentBytes: segHeaderSize + 4*frame, MaxBytes: 12 * frame, Full: FullDropOldest, MemoryBytes: -1}
	s, lb := openTestSpool(t, opts)

	reserved := map[int]bool{}
	ordinary := map[int]bool{}
	totalDropped := 0
	appendOne := func(i int, res bool) {
		t.Helper()
		d, err := s.AppendReserved([][]byte{fixedRec(i)}, []bool{res})
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		totalDropped += d
		if res {
			reserved[i] = true
		} else {
			ordinary[i] = true
		}
		if st := s.Stats(); st.Bytes > opts.MaxBytes {
			t.Fatalf("after %d: %d unacknowledged bytes, cap %d", i, st.Bytes, opts.MaxBytes)
		}
	}
	// Three full segments, a loss event in each: the spool is at its cap.
	for i := range 12 {
		appendOne(i, i%4 == 1)
	}
	if totalDropped != 0 {
		t.Fatalf("dropped %d before the cap", totalDropped)
	}
	// Each further segment's worth deletes the oldest segment.
	for i := 12; i < 24; i++ {
		appendOne(i, false)
	}
	if totalDropped == 0 || len(lb.lines("WARN")) == 0 {
		t.Fatalf("nothing dropped (or not logged) past the cap: dropped %d", totalDropped)
	}

	// The mark is on disk: after a restart, the segments holding the
	// carried loss events are dropped in turn, and the events carried again.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, _ = openTestSpool(t, opts)
	defer s.Close()
	appendOne(24, true)
	for i := 25; i < 48; i++ {
		appendOne(i, false)
	}

	seen := map[int]int{}
	last := -1
	for _, r := range drain(t, s, 100, 1<<20) {
		n := fixedNum(t, r.Data)
		seen[n]++
		if ordinary[n] {
			if n <= last {
				t.Fatalf("ordinary record %d read after %d", n, last)
			}
			last = n
		}
	}
	for n := range reserved {
		if seen[n] != 1 {
			t.Errorf("reserved record %d read %d times, want once", n, seen[n])
		}
	}
	gone := 0
	for n := range ordinary {
		switch seen[n] {
		case 0:
			gone++
		case 1:
		default:
			t.Errorf("record %d read %d times", n, seen[n])
		}
	}
	if gone != totalDropped || gone == 0 {
		t.Fatalf("Append reported %d dropped; %d ordinary records are gone", totalDropped, gone)
	}
	t.Logf("%d records appended, %d reserved kept, %d ordinary dropped", len(reserved)+len(ordinary), len(reserved), gone)
}
