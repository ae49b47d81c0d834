package publish

import (
	"bytes"
	"io"
	"testing"

	"github.com/segmentio/kafka-go/compress"
)

// lz4Pattern writes what kafka-go's record encoder writes for n records of
// a 600-byte event: a dozen small writes (lengths, varints, header keys and
// values) and the value.
func lz4Pattern(w io.Writer, n int) {
	small := []byte("55b0d7d6-6d0b-4a38-9c3a-2d1e5f0c9a11")
	value := lz4Value
	for i := range n {
		for j := range 12 {
			w.Write(small[:1+(i+j)%len(small)])
		}
		w.Write(value)
	}
}

var lz4Value = benchValue(1, 600)

// The codec's frames decompress, with kafka-go's reader, to what was
// written; it is the one kafka-go uses once a sink installed it.
func TestLz4CodecRoundTrip(t *testing.T) {
	installLz4()
	codec := compress.Compression(compress.Lz4).Codec()
	if _, ok := codec.(*lz4Codec); !ok {
		t.Fatalf("lz4 codec is %T, want *lz4Codec", codec)
	}
	for _, n := range []int{1, 100, 1000} { // kafka-go never compresses zero records
		var plain, frame bytes.Buffer
		lz4Pattern(&plain, n)
		for range 2 { // the second time with a pooled writer
			frame.Reset()
			w := codec.NewWriter(&frame)
			lz4Pattern(w, n)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			r := codec.NewReader(bytes.NewReader(frame.Bytes()))
			got, err := io.ReadAll(r)
			r.Close()
			if err != nil || !bytes.Equal(got, plain.Bytes()) {
				t.Fatalf("%d records: read back %d bytes (%v), want %d", n, len(got), err, plain.Len())
			}
		}
	}
}

func BenchmarkLz4Codec(b *testing.B) {
	var frame bytes.Buffer
	codec := compress.Compression(compress.Lz4).Codec()
	b.SetBytes(1000 * 700)
	for b.Loop() {
		frame.Reset()
		w := codec.NewWriter(&frame)
		lz4Pattern(w, 1000)
		w.Close()
	}
}
