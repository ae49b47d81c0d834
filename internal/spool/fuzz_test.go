package spool

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

// fuzzSegment builds a valid segment holding recs.
func fuzzSegment(recs ...string) []byte {
	b := append([]byte(segMagic), 1, 0, 0, 0, 0, 0, 0, 0)
	for i, r := range recs {
		b = appendFrame(b, []byte(r), int64(i)*1e9, false)
	}
	return b
}

type fuzzRec struct {
	data string
	end  int64
}

// parseSegmentForTest is an independent reading of the format: the records
// of seg up to the first bad one.
func parseSegmentForTest(seg []byte) []fuzzRec {
	if len(seg) < 16 || string(seg[:8]) != segMagic || binary.LittleEndian.Uint32(seg[8:]) != 1 {
		return nil
	}
	var out []fuzzRec
	for off := 16; len(seg)-off >= 16; {
		l := int(binary.LittleEndian.Uint32(seg[off:]))
		if l > len(seg)-off-16 {
			break
		}
		if crc32.Checksum(seg[off+8:off+16+l], crc32.MakeTable(crc32.Castagnoli)) != binary.LittleEndian.Uint32(seg[off+4:]) {
			break
		}
		off += 16 + l
		out = append(out, fuzzRec{string(seg[off-l : off]), int64(off)})
	}
	return out
}

// FuzzSpoolRecover feeds arbitrary bytes as a segment file (and a checkpoint:
// none, arbitrary bytes, or a valid one at an arbitrary offset). Open
// must neither fail nor panic, must deliver exactly the valid records after
// the checkpoint, and must keep working.
func FuzzSpoolRecover(f *testing.F) {
	valid := fuzzSegment("", "a", "hello world", string(bytes.Repeat([]byte{0}, 300)), "last")
	f.Add(valid, []byte(nil), int64(0), uint8(0))
	f.Add(valid[:len(valid)-2], []byte(nil), int64(0), uint8(0))
	f.Add(valid, []byte(nil), int64(16+16+16+1), uint8(2))
	f.Add(valid, []byte(nil), int64(30), uint8(2))
	f.Add(valid, []byte(nil), int64(1<<40), uint8(2))
	f.Add(valid, []byte("ANSCKPT1\x01\x00\x00\x00\x00\x00\x00\x00garbage....."), int64(0), uint8(1))
	f.Add([]byte{}, []byte(nil), int64(0), uint8(0))
	f.Add([]byte(segMagic), []byte(nil), int64(0), uint8(0))
	f.Add(fuzzSegment(), []byte(nil), int64(0), uint8(0))
	f.Add(append(fuzzSegment("x"), 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), []byte(nil), int64(0), uint8(0))
	f.Add(bytes.Repeat([]byte{0}, 100), []byte(nil), int64(0), uint8(0))

	f.Fuzz(func(t *testing.T, seg, ckpt []byte, ackOff int64, mode uint8) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, segName(1)), seg, 0o600); err != nil {
			t.Fatal(err)
		}
		want := parseSegmentForTest(seg)
		exact := true
		switch mode % 3 {
		case 1:
			os.WriteFile(filepath.Join(dir, ckptName), ckpt, 0o600)
			exact = false
		case 2:
			w := &Spool{opts: Options{Dir: dir}}
			w.dir, _ = os.Open(dir)
			if _, err := w.writeCheckpoint(Pos{1, ackOff}); err != nil {
				t.Fatal(err)
			}
			w.dir.Close()
			w.ckptFile.Close()
			k := 0
			for k < len(want) && want[k].end <= ackOff {
				k++
			}
			want = want[k:]
		}
		o := Options{Dir: dir, SegmentBytes: 4096, MemoryBytes: 1024, Logger: slog.New(slog.DiscardHandler)}
		s, err := Open(o)
		if err != nil {
			t.Fatalf("Open on garbage: %v", err)
		}
		check := func(s *Spool, extra ...string) {
			got := drain(t, s, 3, 100)
			w := want
			if !exact && len(got) <= len(want)+len(extra) {
				w = want[len(want)+len(extra)-len(got):] // some suffix
			}
			if len(got) != len(w)+len(extra) {
				t.Fatalf("recovered %d records, want %d + %d", len(got), len(w), len(extra))
			}
			for i, r := range got {
				exp := ""
				if i < len(w) {
					exp = w[i].data
					if r.Pos != (Pos{1, w[i].end}) {
						t.Fatalf("record %d at %v, want 1:%d", i, r.Pos, w[i].end)
					}
				} else {
					exp = extra[i-len(w)]
				}
				if string(r.Data) != exp {
					t.Fatalf("record %d is %q, want %q", i, r.Data, exp)
				}
			}
		}
		check(s)
		if _, err := s.Append([][]byte{[]byte("after")}); err != nil {
			t.Fatal(err)
		}
		if got := drain(t, s, 10, 100); len(got) != 1 || string(got[0].Data) != "after" {
			t.Fatalf("after recovery, Append/Next: %d records", len(got))
		}
		s.Rewind()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if len(want) > 0 {
			fi, err := os.Stat(filepath.Join(dir, segName(1)))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Size() != want[len(want)-1].end {
				t.Fatalf("segment is %d bytes, not truncated to its last valid record (%d)", fi.Size(), want[len(want)-1].end)
			}
		}
		s, err = Open(o)
		if err != nil {
			t.Fatalf("second Open: %v", err)
		}
		defer s.Close()
		check(s, "after")
	})
}
