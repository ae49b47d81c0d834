package publish

import (
	"bufio"
	"io"
	"sync"

	"github.com/pierrec/lz4/v4"
	"github.com/segmentio/kafka-go/compress"
)

// kafka-go compresses produced record batches with the codec its global
// table holds for lz4, a pierrec/lz4 frame writer with that library's
// defaults: 4 MiB blocks and a content checksum. A 4 MiB block means 8 MiB
// or more of pooled buffers (data and compressed block) that are allocated
// and cleared again whenever a garbage collection empties the pools, for
// record batches that are well under 1 MiB, and an xxHash pass over all the
// data that the broker does not need. The lz4 codec installed here writes
// the same LZ4 frame format with 64 KiB blocks (what the Java producer
// uses) and no content checksum (the Java producer writes none either; the
// record batch has its own CRC-32C). Reading is unchanged: kafka-go's
// reader, pierrec/lz4's, accepts both.
//
// kafka-go looks codecs up in a process-wide table, so the codec is
// installed there, once, when the first Kafka sink is made (not at import:
// a program that only reads Kafka keeps kafka-go's). Readers of the same
// process are unaffected: NewReader is kafka-go's own.
var installLz4 = sync.OnceFunc(func() {
	compress.Codecs[compress.Lz4] = &lz4Codec{}
})

// lz4Options are the frame writer's: 64 KiB blocks, no content checksum,
// no block checksums, one goroutine, the fast level.
var lz4Options = []lz4.Option{
	lz4.BlockSizeOption(lz4.Block64Kb),
	lz4.ChecksumOption(false),
	lz4.BlockChecksumOption(false),
	lz4.ConcurrencyOption(1),
	lz4.CompressionLevelOption(lz4.Fast),
}

var lz4WriterPool sync.Pool

// lz4Codec is kafka-go's lz4 codec (code 3) with lz4Options.
type lz4Codec struct{}

func (*lz4Codec) Code() int8   { return int8(compress.Lz4) }
func (*lz4Codec) Name() string { return "lz4" }

// NewReader is kafka-go's own.
func (*lz4Codec) NewReader(r io.Reader) io.ReadCloser {
	return compress.Lz4Codec.NewReader(r)
}

func (*lz4Codec) NewWriter(w io.Writer) io.WriteCloser {
	z, _ := lz4WriterPool.Get().(*lz4Writer)
	if z == nil {
		z = &lz4Writer{z: lz4.NewWriter(w)}
		if err := z.z.Apply(lz4Options...); err != nil {
			// The options are constants; this cannot happen.
			panic("publish: lz4 options: " + err.Error())
		}
		z.buf = bufio.NewWriterSize(z.z, int(lz4.Block64Kb))
	}
	z.z.Reset(w)
	z.buf.Reset(z.z)
	z.open = true
	return z
}

// lz4Writer gathers kafka-go's many small writes (a record is a dozen
// varints and header fields, then the value) into whole 64 KiB blocks,
// which the frame writer then compresses without copying them again.
type lz4Writer struct {
	z    *lz4.Writer
	buf  *bufio.Writer
	open bool
}

func (w *lz4Writer) Write(b []byte) (int, error) { return w.buf.Write(b) }

func (w *lz4Writer) Close() error {
	if !w.open {
		return nil
	}
	w.open = false
	err := w.buf.Flush()
	if cerr := w.z.Close(); err == nil {
		err = cerr
	}
	w.z.Reset(nil)
	w.buf.Reset(nil)
	lz4WriterPool.Put(w)
	return err
}
