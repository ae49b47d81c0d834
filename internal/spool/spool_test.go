package spool

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/auditns/auditns/internal/testenv"
)

// ---- helpers ----

// logBuf collects slog output for assertions.
type logBuf struct{ testenv.Buffer }

// lines returns the log lines at level (e.g. "WARN").
func (l *logBuf) lines(level string) []string {
	var out []string
	for _, ln := range strings.Split(l.String(), "\n") {
		if strings.Contains(ln, "level="+level) {
			out = append(out, ln)
		}
	}
	return out
}

func (l *logBuf) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func openTestSpool(t testing.TB, o Options) (*Spool, *logBuf) {
	t.Helper()
	lb := &logBuf{}
	if o.Logger == nil {
		o.Logger = lb.logger()
	}
	s, err := Open(o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s, lb
}

// payload is record i: "r<seq>|" then filler, 9..~700 bytes.
func payload(i int) []byte {
	n := 9 + (i*37)%700
	b := make([]byte, 0, n)
	b = fmt.Appendf(b, "r%07d|", i)
	for len(b) < n {
		b = append(b, byte('a'+(i+len(b))%26))
	}
	return b
}

func seqOf(t testing.TB, d []byte) int {
	t.Helper()
	if len(d) < 9 || d[0] != 'r' || d[8] != '|' {
		t.Fatalf("not a test record: %q", d)
	}
	n, err := strconv.Atoi(string(d[1:8]))
	if err != nil {
		t.Fatalf("bad record %q", d)
	}
	if !bytes.Equal(d, payload(n)) {
		t.Fatalf("record %d has wrong content (%d bytes)", n, len(d))
	}
	return n
}

func batch(from, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = payload(from + i)
	}
	return out
}

// appendEach appends records from..from+n-1 in batches of per (a batch is
// never split across segments).
func appendEach(t testing.TB, s *Spool, from, n, per int) {
	t.Helper()
	for i := from; i < from+n; i += per {
		mustAppend(t, s, batch(i, min(per, from+n-i)))
	}
}

func mustAppend(t testing.TB, s *Spool, recs [][]byte) {
	t.Helper()
	d, err := s.Append(recs)
	if err != nil || d != 0 {
		t.Fatalf("Append: dropped %d, err %v", d, err)
	}
}

// drain reads everything available now (a canceled ctx makes Next poll).
func drain(t testing.TB, s *Spool, maxRecs, maxBytes int) []Record {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out []Record
	for {
		recs, err := s.Next(ctx, maxRecs, maxBytes)
		if errors.Is(err, context.Canceled) {
			return out
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		if len(recs) == 0 || len(recs) > max(maxRecs, 1) {
			t.Fatalf("Next returned %d records (max %d)", len(recs), maxRecs)
		}
		out = append(out, recs...)
	}
}

// nextN reads exactly n records (Next returns at most one segment's worth
// per call).
func nextN(t testing.TB, s *Spool, n int) []Record {
	t.Helper()
	var out []Record
	for len(out) < n {
		recs, err := s.Next(context.Background(), n-len(out), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, recs...)
	}
	return out
}

// checkRun checks that recs are records from..to, in order, with increasing
// positions.
func checkRun(t testing.TB, recs []Record, from, to int) {
	t.Helper()
	if len(recs) != to-from+1 {
		var got []int
		for _, r := range recs {
			got = append(got, seqOf(t, r.Data))
		}
		t.Fatalf("got %d records, want %d..%d (%d); got %v", len(recs), from, to, to-from+1, got)
	}
	for i, r := range recs {
		if n := seqOf(t, r.Data); n != from+i {
			t.Fatalf("record %d is %d, want %d", i, n, from+i)
		}
		if i > 0 && !recs[i-1].Pos.Less(r.Pos) {
			t.Fatalf("positions not increasing: %v then %v", recs[i-1].Pos, r.Pos)
		}
	}
}

func segFiles(t testing.TB, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range m {
		m[i] = filepath.Base(m[i])
	}
	slices.Sort(m)
	return m
}

// crashForTest abandons s like a killed process would: no fsync, no
// checkpoint, files just closed (the kernel keeps what was written).
func (s *Spool) crashForTest() {
	s.mu.Lock()
	s.closed = true
	close(s.closedCh)
	s.mu.Unlock()
	close(s.quit)
	<-s.bgDone
	s.ioMu.Lock()
	defer s.ioMu.Unlock()
	for _, f := range append(append([]*os.File{s.active, s.rf}, s.toSync...), s.toClose...) {
		if f != nil {
			f.Close()
		}
	}
	s.dir.Close()
	s.lock.Close()
}

// writePosForTest is the position after the last appended record.
func (s *Spool) writePosForTest() Pos {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.segs) == 0 {
		return s.ack
	}
	g := s.segs[len(s.segs)-1]
	return Pos{g.seq, g.end}
}

// ---- tests ----

func TestSpoolRoundTripAcrossSegments(t *testing.T) {
	for _, mem := range []int64{0, -1, 4 << 10} {
		t.Run(fmt.Sprintf("memory=%d", mem), func(t *testing.T) {
			dir := t.TempDir()
			s, _ := openTestSpool(t, Options{Dir: dir, SegmentBytes: 4096, MemoryBytes: mem, SyncInterval: time.Millisecond})
			defer s.Close()
			rng := rand.New(rand.NewPCG(1, uint64(mem)))
			const total = 600
			var got []Record
			n := 0
			for n < total {
				k := min(1+rng.IntN(20), total-n)
				mustAppend(t, s, batch(n, k))
				n += k
				if rng.IntN(3) == 0 {
					recs, err := s.Next(context.Background(), 1+rng.IntN(50), 1+rng.IntN(5000))
					if err != nil {
						t.Fatal(err)
					}
					got = append(got, recs...)
				}
			}
			got = append(got, drain(t, s, 37, 3000)...)
			checkRun(t, got, 0, total-1)
			if segs := segFiles(t, dir); len(segs) < 20 {
				t.Fatalf("only %d segments for %d records; rollover not exercised", len(segs), total)
			}
			segsSeen := map[uint64]bool{}
			for _, r := range got {
				segsSeen[r.Pos.Segment] = true
			}
			if len(segsSeen) < 20 {
				t.Fatalf("records span %d segments", len(segsSeen))
			}
			st := s.Stats()
			if st.Records != total {
				t.Fatalf("Stats.Records = %d, want %d", st.Records, total)
			}
			if err := s.Ack(got[len(got)-1].Pos); err != nil {
				t.Fatal(err)
			}
			if err := s.Sync(); err != nil {
				t.Fatal(err)
			}
			st = s.Stats()
			if st.Bytes != 0 || st.Records != 0 || !st.OldestUnacked.IsZero() || st.Segments != 1 {
				t.Fatalf("after acking everything: %+v", st)
			}
			if segs := segFiles(t, dir); len(segs) != 1 {
				t.Fatalf("segments left after acking everything: %v", segs)
			}
		})
	}
}

func TestSpoolBigRecordAndEmptyRecord(t *testing.T) {
	for _, mem := range []int64{0, -1} {
		s, _ := openTestSpool(t, Options{Dir: t.TempDir(), SegmentBytes: 1024, MemoryBytes: mem})
		big := bytes.Repeat([]byte("x"), 5000) // larger than a segment and than maxBytes
		mustAppend(t, s, [][]byte{{}, big, []byte("after")})
		recs := drain(t, s, 10, 100)
		if len(recs) != 3 || len(recs[0].Data) != 0 || !bytes.Equal(recs[1].Data, big) || string(recs[2].Data) != "after" {
			t.Fatalf("memory=%d: got %d records", mem, len(recs))
		}
		s.Close()
	}
}

func TestSpoolReopenResumesAfterAck(t *testing.T) {
	dir := t.TempDir()
	// A long checkpoint interval: only Sync and Close write it.
	o := Options{Dir: dir, SegmentBytes: 2048, SyncInterval: 5 * time.Millisecond, CheckpointInterval: time.Hour}
	s, _ := openTestSpool(t, o)
	appendEach(t, s, 0, 100, 3)
	got := drain(t, s, 7, 1<<20)
	checkRun(t, got, 0, 99)
	if err := s.Ack(got[10].Pos); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if got[10].Pos.Segment == got[59].Pos.Segment {
		t.Fatal("test needs records 10 and 59 in different segments")
	}
	if err := s.Ack(got[59].Pos); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(batch(100, 1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}

	s, _ = openTestSpool(t, o)
	defer s.Close()
	if st := s.Stats(); st.Records != 40 {
		t.Fatalf("after reopen Stats.Records = %d, want 40", st.Records)
	}
	checkRun(t, drain(t, s, 9, 1<<20), 60, 99)
	mustAppend(t, s, batch(100, 10))
	checkRun(t, drain(t, s, 9, 1<<20), 100, 109)
	// A rewind after reopen goes back to the checkpoint.
	s.Rewind()
	checkRun(t, drain(t, s, 1000, 1<<20), 60, 109)
}

func TestSpoolRedeliversUnackedAfterCrash(t *testing.T) {
	dir := t.TempDir()
	o := Options{Dir: dir, SegmentBytes: 4096, SyncInterval: time.Hour, CheckpointInterval: time.Hour}
	s, _ := openTestSpool(t, o)
	appendEach(t, s, 0, 50, 5)
	got := drain(t, s, 10, 1<<20)
	if err := s.Ack(got[19].Pos); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(); err != nil { // checkpoint = record 19
		t.Fatal(err)
	}
	if err := s.Ack(got[29].Pos); err != nil { // never reaches the checkpoint
		t.Fatal(err)
	}
	mustAppend(t, s, batch(50, 30)) // never fsync'd, but written
	s.crashForTest()

	// Segments wholly acknowledged (up to 29) may already be deleted;
	// everything else after the checkpoint (19) is delivered again.
	oldest, _ := strconv.ParseUint(strings.TrimSuffix(segFiles(t, dir)[0], ".seg"), 10, 64)
	first := 20
	for first < 30 && got[first].Pos.Segment < oldest {
		first++
	}
	if got[29].Pos.Segment < oldest-1 {
		t.Fatalf("segment %d deleted, record 29 is in %d", oldest-1, got[29].Pos.Segment)
	}
	s, _ = openTestSpool(t, o)
	defer s.Close()
	checkRun(t, drain(t, s, 16, 1<<20), first, 79)
}

func TestSpoolTornTail(t *testing.T) {
	// setup writes records 0..19 to one segment and returns its path and
	// the record end positions.
	setup := func(t *testing.T) (string, string, []Record) {
		dir := t.TempDir()
		s, _ := openTestSpool(t, Options{Dir: dir})
		mustAppend(t, s, batch(0, 20))
		recs := drain(t, s, 100, 1<<20)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		return dir, filepath.Join(dir, segName(recs[0].Pos.Segment)), recs
	}
	cases := []struct {
		name   string
		damage func(t *testing.T, path string, recs []Record)
		reason string
	}{
		{"truncated-in-data", func(t *testing.T, path string, recs []Record) {
			if err := os.Truncate(path, recs[19].Pos.Offset-5); err != nil {
				t.Fatal(err)
			}
		}, "runs past the end"},
		{"truncated-in-header", func(t *testing.T, path string, recs []Record) {
			if err := os.Truncate(path, recs[18].Pos.Offset+7); err != nil {
				t.Fatal(err)
			}
		}, "torn record header"},
		{"corrupt-data", func(t *testing.T, path string, recs []Record) {
			flipByte(t, path, recs[19].Pos.Offset-3)
		}, "CRC mismatch"},
		{"corrupt-time", func(t *testing.T, path string, recs []Record) {
			flipByte(t, path, recs[18].Pos.Offset+9)
		}, "CRC mismatch"},
		{"corrupt-length", func(t *testing.T, path string, recs []Record) {
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt([]byte{0xff, 0xff, 0xff, 0x7f}, recs[18].Pos.Offset); err != nil {
				t.Fatal(err)
			}
		}, "runs past the end"},
		{"zero-filled-tail", func(t *testing.T, path string, recs []Record) {
			// Power loss on some file systems leaves zeros after the
			// last durable record.
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt(make([]byte, recs[19].Pos.Offset-recs[18].Pos.Offset), recs[18].Pos.Offset); err != nil {
				t.Fatal(err)
			}
		}, "CRC mismatch"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir, path, recs := setup(t)
			tc.damage(t, path, recs)
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			wantCut := fi.Size() - recs[18].Pos.Offset

			s, lb := openTestSpool(t, Options{Dir: dir})
			defer s.Close()
			warns := lb.lines("WARN")
			if len(warns) != 1 {
				t.Fatalf("want exactly one warning, got %d:\n%s", len(warns), lb)
			}
			for _, want := range []string{"segment=" + path, fmt.Sprintf("offset=%d", recs[18].Pos.Offset), fmt.Sprintf("bytes_cut=%d", wantCut), tc.reason} {
				if !strings.Contains(warns[0], want) {
					t.Fatalf("warning lacks %q: %s", want, warns[0])
				}
			}
			if fi, _ := os.Stat(path); fi.Size() != recs[18].Pos.Offset {
				t.Fatalf("segment is %d bytes after recovery, want %d", fi.Size(), recs[18].Pos.Offset)
			}
			if st := s.Stats(); st.CorruptBytes != wantCut || st.Records != 19 {
				t.Fatalf("stats after recovery: %+v", st)
			}
			mustAppend(t, s, batch(19, 5))
			checkRun(t, drain(t, s, 7, 1<<20), 0, 23)
			// And again after a clean reopen: nothing more to cut.
			s.Close()
			s2, lb2 := openTestSpool(t, Options{Dir: dir})
			defer s2.Close()
			if w := lb2.lines("WARN"); len(w) != 0 {
				t.Fatalf("second recovery warned: %v", w)
			}
			checkRun(t, drain(t, s2, 7, 1<<20), 0, 23)
		})
	}
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b [1]byte
	if _, err := f.ReadAt(b[:], off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x40
	if _, err := f.WriteAt(b[:], off); err != nil {
		t.Fatal(err)
	}
}

// TestSpoolCorruptOnRead: damage found by Next (after recovery) is logged,
// counted, and skipped to the end of the segment's written data.
func TestSpoolCorruptOnRead(t *testing.T) {
	dir := t.TempDir()
	o := Options{Dir: dir, SegmentBytes: 4096, MemoryBytes: -1}
	s, lb := openTestSpool(t, o)
	defer s.Close()
	appendEach(t, s, 0, 30, 2)
	recs := drain(t, s, 100, 1<<20)
	s.Rewind()
	seg := recs[5].Pos.Segment
	flipByte(t, filepath.Join(dir, segName(seg)), recs[5].Pos.Offset-1)
	var end int64
	next := 0
	for i, r := range recs {
		if r.Pos.Segment == seg {
			end, next = r.Pos.Offset, i+1
		}
	}
	got := drain(t, s, 100, 1<<20)
	checkRun(t, got[:5], 0, 4)
	checkRun(t, got[5:], next, 29)
	e := lb.lines("ERROR")
	if len(e) != 1 || !strings.Contains(e[0], "CRC mismatch") || !strings.Contains(e[0], fmt.Sprintf("bytes_skipped=%d", end-recs[4].Pos.Offset)) {
		t.Fatalf("errors: %v", e)
	}
	if st := s.Stats(); st.CorruptBytes != end-recs[4].Pos.Offset {
		t.Fatalf("CorruptBytes %d", st.CorruptBytes)
	}
}

func TestSpoolCorruptionInOlderSegment(t *testing.T) {
	dir := t.TempDir()
	o := Options{Dir: dir, SegmentBytes: 2048}
	s, _ := openTestSpool(t, o)
	appendEach(t, s, 0, 60, 3)
	recs := drain(t, s, 100, 1<<20)
	s.Close()
	segs := segFiles(t, dir)
	if len(segs) < 4 {
		t.Fatalf("want several segments, got %v", segs)
	}
	// Damage the third record of the first segment.
	first := recs[0].Pos.Segment
	flipByte(t, filepath.Join(dir, segName(first)), recs[2].Pos.Offset-1)
	lost := 0
	for _, r := range recs[3:] {
		if r.Pos.Segment == first {
			lost++
		}
	}

	s, lb := openTestSpool(t, o)
	defer s.Close()
	if w := lb.lines("WARN"); len(w) != 1 || !strings.Contains(w[0], "CRC mismatch") {
		t.Fatalf("warnings: %v", w)
	}
	got := drain(t, s, 100, 1<<20)
	checkRun(t, got[:2], 0, 1)
	checkRun(t, got[2:], 3+lost, 59)
	if segFiles(t, dir)[0] != segName(first) {
		t.Fatal("the damaged segment's good records were not kept")
	}
}

func TestSpoolGarbageSegments(t *testing.T) {
	dir := t.TempDir()
	s, _ := openTestSpool(t, Options{Dir: dir})
	mustAppend(t, s, batch(0, 5))
	s.Close()
	// A segment with a bad header, one of zero length (crash during
	// creation), a header-only one, and files that are not segments.
	os.WriteFile(filepath.Join(dir, segName(7)), []byte("not a spool segment at all"), 0o600)
	os.WriteFile(filepath.Join(dir, segName(8)), nil, 0o600)
	hdr := append([]byte(segMagic), 1, 0, 0, 0, 0, 0, 0, 0)
	os.WriteFile(filepath.Join(dir, segName(9)), hdr, 0o600)
	os.WriteFile(filepath.Join(dir, "00000000000000000abc.seg"), []byte("x"), 0o600)
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x"), 0o600)

	s, lb := openTestSpool(t, Options{Dir: dir})
	w := lb.lines("WARN")
	if len(w) != 1 || !strings.Contains(w[0], segName(7)) || !strings.Contains(w[0], "bad segment header") {
		t.Fatalf("warnings: %v\n%s", w, lb)
	}
	checkRun(t, drain(t, s, 100, 1<<20), 0, 4)
	mustAppend(t, s, batch(5, 1))
	checkRun(t, drain(t, s, 100, 1<<20), 5, 5)
	if r := drain(t, s, 1, 1); len(r) != 0 {
		t.Fatal("extra records")
	}
	s.Close()
	segs := segFiles(t, dir)
	// The new segment is numbered after every segment seen, even removed ones.
	if len(segs) != 3 || segs[0] != segName(1) || segs[1] != segName(10) {
		t.Fatalf("segments: %v", segs)
	}
}

func TestSpoolFullDropNewest(t *testing.T) {
	const dataLen = 100
	frame := int64(frameHeaderSize + dataLen)
	rec := func(i int) []byte {
		b := payload(i)
		b = append(b, bytes.Repeat([]byte{'z'}, dataLen)...)
		return b[:dataLen]
	}
	recs := func(from, n int) [][]byte {
		out := make([][]byte, n)
		for i := range out {
			out[i] = rec(from + i)
		}
		return out
	}
	dir := t.TempDir()
	s, _ := openTestSpool(t, Options{Dir: dir, SegmentBytes: 4 * frame, MaxBytes: 10 * frame, ReserveBytes: -1})
	defer s.Close()

	if d, err := s.Append(recs(0, 15)); err != nil || d != 5 {
		t.Fatalf("Append 15 into room for 10: dropped %d, err %v", d, err)
	}
	if d, err := s.Append(recs(15, 3)); err != nil || d != 3 {
		t.Fatalf("Append into a full spool: dropped %d, err %v", d, err)
	}
	if st := s.Stats(); st.Dropped != 8 || st.Bytes != 10*frame || st.Records != 10 {
		t.Fatalf("stats: %+v", st)
	}
	got := drain(t, s, 100, 1<<20)
	if len(got) != 10 {
		t.Fatalf("kept %d records", len(got))
	}
	for i, r := range got {
		if !bytes.Equal(r.Data, rec(i)) {
			t.Fatalf("record %d is not the %dth appended", i, i)
		}
	}
	// Acknowledging 5 makes room for exactly 5.
	if err := s.Ack(got[4].Pos); err != nil {
		t.Fatal(err)
	}
	if d, err := s.Append(recs(100, 7)); err != nil || d != 2 {
		t.Fatalf("after ack: dropped %d, err %v", d, err)
	}
	// A record that does not fit is dropped, a later smaller one is kept.
	if err := s.Ack(s.writePosForTest()); err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("B"), int(10*frame))
	if d, err := s.Append([][]byte{big, rec(200)}); err != nil || d != 1 {
		t.Fatalf("oversized record: dropped %d, err %v", d, err)
	}
	got = drain(t, s, 100, 1<<20) // the ack above skipped the unread 100..104
	if len(got) != 1 || !bytes.Equal(got[0].Data, rec(200)) {
		t.Fatalf("got %d records after the big one", len(got))
	}
	if st := s.Stats(); st.Dropped != 11 {
		t.Fatalf("Stats.Dropped = %d, want 11", st.Dropped)
	}
}

// A full spool keeps ReserveBytes for reserved records: the loss event
// that says what was refused still fits, until the reserve is used up too.
func TestSpoolFullKeepsRoomForReservedRecords(t *testing.T) {
	const dataLen = 100
	frame := int64(frameHeaderSize + dataLen)
	rec := func() []byte { return bytes.Repeat([]byte{'r'}, dataLen) }
	s, _ := openTestSpool(t, Options{Dir: t.TempDir(), MaxBytes: 10 * frame, ReserveBytes: 2 * frame})
	defer s.Close()
	var batch [][]byte
	for range 15 {
		batch = append(batch, rec())
	}
	if d, err := s.Append(batch); err != nil || d != 7 {
		t.Fatalf("15 records into room for 8 (2 reserved): dropped %d, err %v", d, err)
	}
	if d, err := s.Append(batch[:1]); err != nil || d != 1 {
		t.Fatalf("an ordinary record into the reserve: dropped %d, err %v", d, err)
	}
	if d, err := s.AppendReserved([][]byte{rec(), rec(), rec(), rec()}, []bool{false, true, true, true}); err != nil || d != 2 {
		t.Fatalf("reserved records: dropped %d, want the ordinary one and the third reserved", d)
	}
	if st := s.Stats(); st.Records != 10 || st.Bytes != 10*frame || st.Dropped != 10 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSpoolFullDropOldest(t *testing.T) {
	const dataLen = 100
	frame := int64(frameHeaderSize + dataLen)
	rec := func(i int) []byte {
		b := fmt.Appendf(nil, "r%07d|", i)
		return append(b, bytes.Repeat([]byte{'z'}, dataLen-len(b))...)
	}
	num := func(d []byte) int { n, _ := strconv.Atoi(string(d[1:8])); return n }
	dir := t.TempDir()
	segBytes := segHeaderSize + 4*frame // 4 records per segment
	maxBytes := 12 * frame
	s, lb := openTestSpool(t, Options{Dir: dir, SegmentBytes: segBytes, MaxBytes: maxBytes, Full: FullDropOldest, MemoryBytes: -1})
	defer s.Close()

	// The reader takes the first two records (in flight) before the spool
	// overflows.
	for i := range 3 {
		if d, err := s.Append([][]byte{rec(i)}); err != nil || d != 0 {
			t.Fatal(d, err)
		}
	}
	inflight, err := s.Next(context.Background(), 2, 1<<20)
	if err != nil || len(inflight) != 2 {
		t.Fatal(len(inflight), err)
	}
	totalDropped := 0
	for i := 3; i < 30; i++ {
		d, err := s.Append([][]byte{rec(i)})
		if err != nil {
			t.Fatal(err)
		}
		totalDropped += d
		if st := s.Stats(); st.Bytes > maxBytes {
			t.Fatalf("unacked bytes %d exceed MaxBytes %d", st.Bytes, maxBytes)
		}
	}
	// 30 records, 4 per segment, at most 12 unacked: whole segments are
	// deleted, oldest first, except the one the reader has taken records
	// of (they are being delivered): 0-3, then 24-27 and 28-29 survive.
	got := drain(t, s, 100, 1<<20)
	if len(inflight)+len(got)+totalDropped != 30 {
		t.Fatalf("in flight %d + kept %d + dropped %d != 30", len(inflight), len(got), totalDropped)
	}
	var nums []int
	for _, r := range got {
		nums = append(nums, num(r.Data))
	}
	if want := []int{2, 3, 24, 25, 26, 27, 28, 29}; !slices.Equal(nums, want) {
		t.Fatalf("read %v after the 2 in flight, want %v", nums, want)
	}
	if st := s.Stats(); int(st.Dropped) != totalDropped || st.Records != 10 {
		t.Fatalf("stats %+v, dropped %d", st, totalDropped)
	}
	if err := s.Ack(inflight[1].Pos); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Records != 8 {
		t.Fatalf("after acknowledging the 2 in flight: %+v", st)
	}
	if len(lb.lines("WARN")) == 0 {
		t.Fatal("dropping unacknowledged records was not logged")
	}

	// A batch larger than MaxBytes keeps its newest records, and deletes
	// what is spooled and unread (Rewind: nothing is in flight).
	s.Rewind()
	// A batch larger than MaxBytes keeps its newest records.
	d, err := s.Append(func() [][]byte {
		var b [][]byte
		for i := range 15 {
			b = append(b, rec(100+i))
		}
		return b
	}())
	if err != nil || d != 8+3 {
		t.Fatalf("oversized batch: dropped %d (want 8 spooled + 3 of the batch), err %v", d, err)
	}
	got = drain(t, s, 100, 1<<20)
	if len(got) != 12 || num(got[0].Data) != 103 || num(got[11].Data) != 114 {
		t.Fatalf("after oversized batch got %d records", len(got))
	}
}

func readCkptForTest(t *testing.T, dir string) Pos {
	t.Helper()
	p, found, bad, err := readCheckpoint(filepath.Join(dir, ckptName))
	if err != nil || !found || bad != "" {
		t.Fatalf("checkpoint: found %v, bad %q, err %v", found, bad, err)
	}
	return p
}

func TestSpoolAckDeletesSegmentsAndCheckpointSurvives(t *testing.T) {
	dir := t.TempDir()
	o := Options{Dir: dir, SegmentBytes: 2048, CheckpointInterval: time.Hour}
	s, _ := openTestSpool(t, o)
	appendEach(t, s, 0, 60, 2)
	recs := drain(t, s, 100, 1<<20)
	all := segFiles(t, dir)
	if len(all) < 5 {
		t.Fatalf("segments: %v", all)
	}
	ack := recs[20].Pos
	if err := s.Ack(ack); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, r := range recs[21:] {
		if n := segName(r.Pos.Segment); !slices.Contains(want, n) {
			want = append(want, n)
		}
	}
	if got := segFiles(t, dir); !slices.Equal(got, want) {
		t.Fatalf("after ack %v: segments %v, want %v", ack, got, want)
	}
	if p := readCkptForTest(t, dir); p != ack {
		t.Fatalf("checkpoint %v, want %v", p, ack)
	}
	// Bad acks.
	if err := s.Ack(Pos{ack.Segment + 100, 20}); err == nil {
		t.Fatal("ack past the end accepted")
	}
	if err := s.Ack(recs[5].Pos); err != nil { // older: no-op
		t.Fatal(err)
	}
	s.Close()

	s, _ = openTestSpool(t, o)
	defer s.Close()
	checkRun(t, drain(t, s, 100, 1<<20), 21, 59)
	if got := segFiles(t, dir); !slices.Equal(got, want) {
		t.Fatalf("after reopen: segments %v, want %v", got, want)
	}
	// Acknowledging the last record of a segment deletes it.
	var lastOfFirst Record
	for _, r := range recs {
		if r.Pos.Segment == recs[21].Pos.Segment {
			lastOfFirst = r
		}
	}
	if err := s.Ack(lastOfFirst.Pos); err != nil {
		t.Fatal(err)
	}
	s.Sync()
	if got := segFiles(t, dir); slices.Contains(got, segName(lastOfFirst.Pos.Segment)) {
		t.Fatalf("wholly acknowledged segment %d still there: %v", lastOfFirst.Pos.Segment, got)
	}
}

func TestSpoolCheckpointWrittenInBackground(t *testing.T) {
	dir := t.TempDir()
	s, _ := openTestSpool(t, Options{Dir: dir, CheckpointInterval: 5 * time.Millisecond, SyncInterval: 5 * time.Millisecond})
	defer s.Close()
	mustAppend(t, s, batch(0, 10))
	recs := drain(t, s, 100, 1<<20)
	for i := range recs {
		if err := s.Ack(recs[i].Pos); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		p, found, _, _ := readCheckpoint(filepath.Join(dir, ckptName))
		if found && p == recs[9].Pos {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("checkpoint not written in the background: %v", p)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Group fsync happened too.
	for {
		s.mu.Lock()
		dirty := s.dirty
		s.mu.Unlock()
		if !dirty {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("appended data never fsync'd")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSpoolCorruptCheckpoint(t *testing.T) {
	// Records 0..59 over several segments; 0..20 acknowledged, so the
	// segments holding only records < 21 are deleted.
	setup := func(t *testing.T) (string, []Record, int) {
		dir := t.TempDir()
		s, _ := openTestSpool(t, Options{Dir: dir, SegmentBytes: 2048})
		appendEach(t, s, 0, 60, 1)
		recs := drain(t, s, 100, 1<<20)
		if err := s.Ack(recs[20].Pos); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		oldest := 0 // first record of the oldest surviving segment
		for i, r := range recs {
			if r.Pos.Segment == recs[21].Pos.Segment {
				oldest = i
				break
			}
		}
		return dir, recs, oldest
	}
	ckpt := func(dir string) string { return filepath.Join(dir, ckptName) }
	t.Run("garbage", func(t *testing.T) {
		dir, _, oldest := setup(t)
		flipByte(t, ckpt(dir), 12)
		s, lb := openTestSpool(t, Options{Dir: dir, SegmentBytes: 2048})
		defer s.Close()
		if w := lb.lines("WARN"); len(w) != 1 || !strings.Contains(w[0], "checkpoint unusable") || !strings.Contains(w[0], "CRC mismatch") {
			t.Fatalf("warnings: %v", w)
		}
		checkRun(t, drain(t, s, 100, 1<<20), oldest, 59)
		// The bad checkpoint is replaced at the next flush.
		s.Sync()
		readCkptForTest(t, dir)
	})
	t.Run("truncated", func(t *testing.T) {
		dir, _, oldest := setup(t)
		os.Truncate(ckpt(dir), 5)
		s, lb := openTestSpool(t, Options{Dir: dir, SegmentBytes: 2048})
		defer s.Close()
		if w := lb.lines("WARN"); len(w) != 1 || !strings.Contains(w[0], "checkpoint unusable") {
			t.Fatalf("warnings: %v", w)
		}
		checkRun(t, drain(t, s, 100, 1<<20), oldest, 59)
	})
	t.Run("missing", func(t *testing.T) {
		dir, _, oldest := setup(t)
		os.Remove(ckpt(dir))
		s, lb := openTestSpool(t, Options{Dir: dir, SegmentBytes: 2048})
		defer s.Close()
		if w := lb.lines("WARN"); len(w) != 0 {
			t.Fatalf("warnings: %v", w)
		}
		checkRun(t, drain(t, s, 100, 1<<20), oldest, 59)
	})
	t.Run("not-a-boundary", func(t *testing.T) {
		dir, recs, _ := setup(t)
		s := &Spool{opts: Options{Dir: dir}}
		s.dir, _ = os.Open(dir)
		if _, err := s.writeCheckpoint(Pos{recs[30].Pos.Segment, recs[30].Pos.Offset - 3}); err != nil {
			t.Fatal(err)
		}
		s.dir.Close()
		s.ckptFile.Close()
		s2, lb := openTestSpool(t, Options{Dir: dir, SegmentBytes: 2048})
		defer s2.Close()
		if w := lb.lines("WARN"); len(w) != 1 || !strings.Contains(w[0], "not at a record boundary") {
			t.Fatalf("warnings: %v", w)
		}
		checkRun(t, drain(t, s2, 100, 1<<20), 30, 59)
	})
	t.Run("past-the-end", func(t *testing.T) {
		// The checkpoint acknowledges records that recovery cut (data fsync
		// lagged the checkpoint before a power loss): they were delivered.
		dir, recs, _ := setup(t)
		seg := recs[30].Pos.Segment
		var last Record
		for _, r := range recs {
			if r.Pos.Segment == seg {
				last = r
			}
		}
		s := &Spool{opts: Options{Dir: dir}}
		s.dir, _ = os.Open(dir)
		s.writeCheckpoint(last.Pos)
		s.dir.Close()
		s.ckptFile.Close()
		os.Truncate(filepath.Join(dir, segName(seg)), last.Pos.Offset-3)
		s2, _ := openTestSpool(t, Options{Dir: dir, SegmentBytes: 2048})
		defer s2.Close()
		first := slices.IndexFunc(recs, func(r Record) bool { return r.Pos.Segment > seg })
		checkRun(t, drain(t, s2, 100, 1<<20), first, 59)
		mustAppend(t, s2, batch(60, 2))
		checkRun(t, drain(t, s2, 100, 1<<20), 60, 61)
	})
}

func TestSpoolRewind(t *testing.T) {
	for _, mem := range []int64{0, -1} {
		s, _ := openTestSpool(t, Options{Dir: t.TempDir(), SegmentBytes: 2048, MemoryBytes: mem})
		appendEach(t, s, 0, 40, 4)
		checkRun(t, nextN(t, s, 10), 0, 9)
		s.Rewind() // nothing acknowledged: from the start
		checkRun(t, drain(t, s, 3, 1<<20), 0, 39)
		s.Rewind()
		a := nextN(t, s, 10)
		if err := s.Ack(a[3].Pos); err != nil {
			t.Fatal(err)
		}
		nextN(t, s, 10)
		s.Rewind()
		checkRun(t, drain(t, s, 6, 1<<20), 4, 39)
		if st := s.Stats(); st.Records != 36 {
			t.Fatalf("memory=%d: Records = %d after acking 4", mem, st.Records)
		}
		s.Close()
	}
}

func TestSpoolRecordsCountWithPartialAcks(t *testing.T) {
	s, _ := openTestSpool(t, Options{Dir: t.TempDir(), SegmentBytes: 1024})
	defer s.Close()
	appendEach(t, s, 0, 50, 1)
	recs := drain(t, s, 13, 1<<20)
	for _, i := range []int{2, 3, 17, 30, 31, 49} {
		if err := s.Ack(recs[i].Pos); err != nil {
			t.Fatal(err)
		}
		if st := s.Stats(); st.Records != int64(49-i) {
			t.Fatalf("after ack of %d: Records = %d, want %d", i, st.Records, 49-i)
		}
	}
}

func TestSpoolNextBlocksAndWakes(t *testing.T) {
	s, _ := openTestSpool(t, Options{Dir: t.TempDir()})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := s.Next(ctx, 10, 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next on an empty spool: %v", err)
	}
	if d := time.Since(start); d < 25*time.Millisecond {
		t.Fatalf("Next returned after %v without waiting", d)
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		s.Append(batch(0, 3))
	}()
	recs, err := s.Next(context.Background(), 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	checkRun(t, recs, 0, len(recs)-1)
	drain(t, s, 10, 0)

	errc := make(chan error, 1)
	go func() {
		_, err := s.Next(context.Background(), 10, 0)
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("waiting Next after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake a waiting Next")
	}
}

func TestSpoolStatsOldestUnacked(t *testing.T) {
	dir := t.TempDir()
	o := Options{Dir: dir, SegmentBytes: 1024}
	s, _ := openTestSpool(t, o)
	if st := s.Stats(); !st.OldestUnacked.IsZero() || st.Bytes != 0 || st.Records != 0 {
		t.Fatalf("empty spool: %+v", st)
	}
	t0 := time.Now()
	mustAppend(t, s, batch(0, 5))
	t1 := time.Now()
	time.Sleep(10 * time.Millisecond)
	t2 := time.Now()
	mustAppend(t, s, batch(5, 5))
	t3 := time.Now()
	st := s.Stats()
	if st.OldestUnacked.Before(t0) || st.OldestUnacked.After(t1) {
		t.Fatalf("OldestUnacked %v not in [%v, %v]", st.OldestUnacked, t0, t1)
	}
	var frames int64
	for i := range 10 {
		frames += frameSize(payload(i))
	}
	if st.Bytes != frames || st.Records != 10 || st.Segments < 2 {
		t.Fatalf("stats %+v, want Bytes %d", st, frames)
	}
	recs := drain(t, s, 100, 1<<20)
	s.Ack(recs[4].Pos)
	if st := s.Stats(); st.OldestUnacked.Before(t2) || st.OldestUnacked.After(t3) {
		t.Fatalf("after ack: OldestUnacked %v not in [%v, %v]", st.OldestUnacked, t2, t3)
	}
	s.Ack(recs[6].Pos)
	s.Close()
	s, _ = openTestSpool(t, o) // read from disk now
	defer s.Close()
	if st := s.Stats(); st.OldestUnacked.Before(t2) || st.OldestUnacked.After(t3) || st.Records != 3 {
		t.Fatalf("after reopen: %+v", st)
	}
	s.Ack(recs[9].Pos)
	if st := s.Stats(); !st.OldestUnacked.IsZero() || st.Records != 0 || st.Bytes != 0 {
		t.Fatalf("all acknowledged: %+v", st)
	}
}

func TestSpoolPermissionsAndLock(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	s, _ := openTestSpool(t, Options{Dir: dir})
	mustAppend(t, s, batch(0, 1))
	recs := drain(t, s, 1, 0)
	s.Ack(recs[0].Pos)
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Options{Dir: dir, Logger: slog.New(slog.DiscardHandler)}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second Open on the same directory: %v", err)
	}
	fi, _ := os.Stat(dir)
	if fi.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode %v", fi.Mode().Perm())
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) < 3 {
		t.Fatalf("files: %v", ents)
	}
	for _, e := range ents {
		fi, _ := e.Info()
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s mode %v", e.Name(), fi.Mode().Perm())
		}
	}
	s.Close()
	s, _ = openTestSpool(t, Options{Dir: dir}) // the lock is released
	s.Close()
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestSpoolOptionsValidation(t *testing.T) {
	dir := t.TempDir()
	for _, o := range []Options{
		{},
		{Dir: dir, Full: "drop_everything"},
		{Dir: dir, SegmentBytes: 10},
		{Dir: dir, MaxBytes: -1},
		{Dir: dir, SyncInterval: -1},
		{Dir: dir, CheckpointInterval: -1},
	} {
		if s, err := Open(o); err == nil {
			s.Close()
			t.Fatalf("Open(%+v) accepted", o)
		}
	}
	o, err := Options{Dir: dir}.withDefaults()
	if err != nil || o.SegmentBytes != 64<<20 || o.MaxBytes != 1<<30 || o.Full != FullDropNewest || o.MemoryBytes != 4<<20 || o.Logger == nil {
		t.Fatalf("defaults: %+v %v", o, err)
	}
}

// TestSpoolWriteError: a failed write stores nothing of the batch, reports
// it all as dropped, and the spool carries on in a new segment.
func TestSpoolWriteError(t *testing.T) {
	dir := t.TempDir()
	s, lb := openTestSpool(t, Options{Dir: dir, MemoryBytes: -1})
	defer s.Close()
	appendEach(t, s, 0, 10, 5)
	s.active.Close() // the next write(2) fails
	d, err := s.Append(batch(10, 4))
	if err == nil || d != 4 {
		t.Fatalf("Append on a broken file: dropped %d, err %v", d, err)
	}
	appendEach(t, s, 14, 6, 3)
	got := drain(t, s, 100, 1<<20)
	checkRun(t, got[:10], 0, 9)
	checkRun(t, got[10:], 14, 19)
	if st := s.Stats(); st.Dropped != 4 || st.Records != 16 || st.Segments != 2 {
		t.Fatalf("stats %+v", st)
	}
	if err := s.Sync(); err == nil { // the sealed file's fsync fails
		t.Fatal("Sync hid the fsync error")
	}
	if len(lb.lines("ERROR")) == 0 || s.Stats().SyncErrors == 0 {
		t.Fatal("fsync error not logged or counted")
	}
}

func TestSpoolSyncEveryAppend(t *testing.T) {
	s, _ := openTestSpool(t, Options{Dir: t.TempDir(), SyncInterval: 0})
	defer s.Close()
	mustAppend(t, s, batch(0, 3))
	s.mu.Lock()
	dirty := s.dirty
	s.mu.Unlock()
	if dirty {
		t.Fatal("SyncInterval 0: Append returned before fsync")
	}
}

func TestSpoolAppendAllocs(t *testing.T) {
	s, _ := openTestSpool(t, Options{Dir: t.TempDir(), SyncInterval: time.Hour, MaxBytes: 1 << 40})
	defer s.Close()
	b := make([][]byte, 64)
	for i := range b {
		b[i] = bytes.Repeat([]byte{'a'}, 600)
	}
	mustAppend(t, s, b) // warm up: segment, buffers
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := s.Append(b); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 1 {
		t.Fatalf("Append of 64 records: %.1f allocations per batch", allocs)
	}
}

// TestSpoolConcurrent runs a writer and a forwarder that reads, acknowledges
// partly and rewinds at random, and checks order and completeness.
func TestSpoolConcurrent(t *testing.T) {
	dir := t.TempDir()
	s, _ := openTestSpool(t, Options{Dir: dir, SegmentBytes: 16 << 10, MemoryBytes: 32 << 10, SyncInterval: time.Millisecond, CheckpointInterval: time.Millisecond})
	const total = 20000
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(7, 7))
		for n := 0; n < total; {
			k := min(1+rng.IntN(64), total-n)
			if d, err := s.Append(batch(n, k)); err != nil || d != 0 {
				t.Errorf("Append: %d %v", d, err)
				return
			}
			n += k
			if rng.IntN(50) == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	rng := rand.New(rand.NewPCG(8, 8))
	acked, read := -1, -1 // last acknowledged / last read record
	var ackedPos Pos
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for acked < total-1 {
		recs, err := s.Next(ctx, 1+rng.IntN(200), 1+rng.IntN(64<<10))
		if err != nil {
			t.Fatalf("Next after %d acked: %v", acked, err)
		}
		for _, r := range recs {
			n := seqOf(t, r.Data)
			if n != read+1 {
				t.Fatalf("read %d after %d", n, read)
			}
			read = n
		}
		c := rng.IntN(10)
		if read == total-1 && c != 0 {
			c = 9 // everything read: acknowledge it all
		}
		switch c {
		case 0: // failed send
			s.Rewind()
			read = acked
		case 1, 2: // partial ack
			i := rng.IntN(len(recs))
			if err := s.Ack(recs[i].Pos); err != nil {
				t.Fatal(err)
			}
			acked, ackedPos = seqOf(t, recs[i].Data), recs[i].Pos
		default:
			if err := s.Ack(recs[len(recs)-1].Pos); err != nil {
				t.Fatal(err)
			}
			acked, ackedPos = read, recs[len(recs)-1].Pos
		}
		if rng.IntN(100) == 0 {
			s.Stats()
		}
	}
	wg.Wait()
	_ = ackedPos
	if st := s.Stats(); st.Records != 0 || st.Bytes != 0 {
		t.Fatalf("after everything acked: %+v", st)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if segs := segFiles(t, dir); len(segs) != 1 {
		t.Fatalf("segments left: %v", segs)
	}
}

// TestSpoolDropOldestWhileReading races drop_oldest against a reader:
// every record is read or counted dropped, once.
func TestSpoolDropOldestWhileReading(t *testing.T) {
	s, _ := openTestSpool(t, Options{Dir: t.TempDir(), SegmentBytes: 4 << 10, MaxBytes: 16 << 10, Full: FullDropOldest, MemoryBytes: 8 << 10, SyncInterval: time.Millisecond})
	const total = 20000
	done := make(chan int)
	go func() {
		dropped := 0
		for n := 0; n < total; n += 10 {
			d, err := s.Append(batch(n, 10))
			if err != nil {
				t.Error(err)
			}
			dropped += d
		}
		done <- dropped
	}()
	last, read := -1, 0
	ctx := context.Background()
	var dropped = -1
	for {
		if dropped < 0 {
			select {
			case dropped = <-done:
			default:
			}
		}
		c, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		recs, err := s.Next(c, 50, 1<<20)
		cancel()
		if err != nil {
			if dropped >= 0 && errors.Is(err, context.DeadlineExceeded) {
				break
			}
			continue
		}
		for _, r := range recs {
			n := seqOf(t, r.Data)
			if n <= last {
				t.Fatalf("read %d after %d", n, last)
			}
			last = n
		}
		read += len(recs)
		if err := s.Ack(recs[len(recs)-1].Pos); err != nil {
			t.Fatal(err)
		}
	}
	if last != total-1 {
		t.Fatalf("last record read %d", last)
	}
	st := s.Stats()
	if int(st.Dropped) != dropped {
		t.Fatalf("Stats.Dropped %d, Append reported %d", st.Dropped, dropped)
	}
	if read+dropped != total {
		t.Fatalf("read %d + dropped %d != %d appended", read, dropped, total)
	}
	t.Logf("dropped %d of %d", dropped, total)
	s.Close()
}

func TestSpoolCheckpointFormat(t *testing.T) {
	dir := t.TempDir()
	s := &Spool{opts: Options{Dir: dir}}
	s.dir, _ = os.Open(dir)
	defer s.dir.Close()
	check := func(pos Pos, wantDirSynced bool) {
		t.Helper()
		dirSynced, err := s.writeCheckpoint(pos)
		if err != nil {
			t.Fatal(err)
		}
		if dirSynced != wantDirSynced {
			t.Fatalf("dirSynced = %v, want %v (the first write renames, later ones write in place)", dirSynced, wantDirSynced)
		}
		b, _ := os.ReadFile(filepath.Join(dir, ckptName))
		if len(b) != 28 || string(b[:8]) != "ANSCKPT1" || binary.LittleEndian.Uint64(b[8:]) != pos.Segment || binary.LittleEndian.Uint64(b[16:]) != uint64(pos.Offset) {
			t.Fatalf("checkpoint bytes %x", b)
		}
		if got, found, bad, err := readCheckpoint(filepath.Join(dir, ckptName)); got != pos || !found || bad != "" || err != nil {
			t.Fatalf("readCheckpoint: %v %v %q %v, want %v", got, found, bad, err, pos)
		}
	}
	check(Pos{0x0102030405060708, 0x1112131415161718}, true)
	check(Pos{0x0102030405060709, 16}, false)
	check(Pos{0x0102030405060709, 0x7fffffff}, false)
	s.ckptFile.Close()
}
