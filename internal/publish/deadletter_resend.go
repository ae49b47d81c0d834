package publish

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/segmentio/kafka-go"
)

// ResendResult is what ResendDeadLetters did.
type ResendResult struct {
	Path string
	// Sent is how many messages the brokers acknowledged; Kept how many
	// stay in the dead-letter file (refused again, or not messages:
	// undecodable spool records).
	Sent, Kept int
}

// resendBatch is how many messages one WriteMessages call carries.
const resendBatch = 500

// ResendDeadLetters sends the messages of the dead-letter file of opts
// (opts.DeadLetterPath, default in the spool directory) to their topics
// again, as the sink would have (key, headers, timestamp, acks=all), once
// the cause is fixed. What is sent leaves the file; what is refused again
// stays in it. The daemon may run meanwhile: the file is moved aside to
// "<path>.resending" under its lock first (and a "<path>.resending" left by
// an interrupted run is sent first), so that new dead letters go to a new
// file.
func ResendDeadLetters(ctx context.Context, opts KafkaOptions) (ResendResult, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	cfg, err := opts.validate(opts.Logger)
	if err != nil {
		return ResendResult{}, err
	}
	o := &cfg.opts
	res := ResendResult{Path: o.DeadLetterPath}
	work := o.DeadLetterPath + ".resending"
	if _, err := os.Stat(work); errors.Is(err, os.ErrNotExist) {
		if _, err := os.Stat(o.DeadLetterPath); errors.Is(err, os.ErrNotExist) {
			return res, nil
		}
		f, err := openLockedDeadLetter(o.DeadLetterPath)
		if err != nil {
			return res, err
		}
		err = os.Rename(o.DeadLetterPath, work)
		f.Close()
		if err != nil {
			return res, fmt.Errorf("dead-letter file: %w", err)
		}
	}

	lines, err := readLines(work)
	if err != nil {
		return res, err
	}
	w := &kafka.Writer{
		Addr:         kafka.TCP(o.Brokers...),
		Balancer:     &kafka.Hash{}, // the sink's partitioner (see partitionOf)
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: 10 * time.Millisecond,
		BatchSize:    resendBatch,
		BatchBytes:   o.BatchBytes,
		WriteTimeout: o.WriteTimeout,
		Compression:  cfg.compression,
		MaxAttempts:  3,
		Transport:    &kafka.Transport{TLS: cfg.tls, SASL: cfg.sasl, ClientID: "auditns-resend"},
	}
	defer w.Close()

	var kept [][]byte
	for start := 0; start < len(lines); start += resendBatch {
		batch := lines[start:min(start+resendBatch, len(lines))]
		var msgs []kafka.Message
		var from []int // index in batch of each message
		for i, line := range batch {
			m, ok := deadLetterMessage(line)
			if !ok {
				kept = append(kept, line)
				continue
			}
			msgs = append(msgs, m)
			from = append(from, i)
		}
		if len(msgs) == 0 {
			continue
		}
		err := w.WriteMessages(ctx, msgs...)
		var werrs kafka.WriteErrors
		switch {
		case err == nil:
			res.Sent += len(msgs)
		case errors.As(err, &werrs):
			for j, e := range werrs {
				if e != nil {
					kept = append(kept, batch[from[j]])
				} else {
					res.Sent++
				}
			}
		default:
			// Nothing of this batch is known to have arrived; keep it and
			// everything after it.
			for _, i := range from {
				kept = append(kept, batch[i])
			}
			kept = append(kept, lines[start+len(batch):]...)
			res.Kept = len(kept)
			if werr := putBack(o.DeadLetterPath, work, kept); werr != nil {
				return res, errors.Join(err, werr)
			}
			return res, fmt.Errorf("resend: %w", err)
		}
	}
	res.Kept = len(kept)
	return res, putBack(o.DeadLetterPath, work, kept)
}

// deadLetterMessage rebuilds the Kafka message of a dead-letter line.
func deadLetterMessage(line []byte) (kafka.Message, bool) {
	var d DeadLetter
	if err := json.Unmarshal(line, &d); err != nil || d.Topic == "" {
		return kafka.Message{}, false
	}
	m := kafka.Message{Topic: d.Topic, Time: d.EventTime, Value: d.ValueB64}
	if d.Value != nil {
		m.Value = d.Value
	}
	if d.Key != "" {
		m.Key = []byte(d.Key)
	} else if d.KeyB64 != nil {
		m.Key = d.KeyB64
	}
	o := outMsg{id: []byte(d.EventID), schema: []byte(d.Schema), bootID: []byte(d.BootID)}
	m.Headers = o.headers(nil)
	return m, true
}

func readLines(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("dead-letter file: %w", err)
	}
	defer f.Close()
	var lines [][]byte
	r := bufio.NewReaderSize(f, 1<<20)
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 && !(len(line) == 1 && line[0] == '\n') {
			if line[len(line)-1] != '\n' {
				line = append(line, '\n')
			}
			lines = append(lines, line)
		}
		if err == io.EOF {
			return lines, nil
		}
		if err != nil {
			return nil, fmt.Errorf("dead-letter file %s: %w", path, err)
		}
	}
}

// putBack appends the kept lines to the dead-letter file, durably, and
// removes the work file.
func putBack(path, work string, kept [][]byte) error {
	if len(kept) > 0 {
		f, err := openLockedDeadLetter(path)
		if err != nil {
			return err
		}
		var b []byte
		for _, l := range kept {
			b = append(b, l...)
		}
		_, err = f.Write(b)
		if err == nil {
			err = f.Sync()
		}
		f.Close()
		if err != nil {
			return fmt.Errorf("dead-letter file %s: %w", path, err)
		}
	}
	if err := os.Remove(work); err != nil {
		return fmt.Errorf("dead-letter file: %w", err)
	}
	return nil
}
