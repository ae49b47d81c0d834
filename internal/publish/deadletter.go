package publish

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// DeadLetter is one line of the dead-letter file: a message the broker
// refused for good (too large, not authorised, invalid timestamp, ...), kept
// with the reason so that nothing leaves auditns without a trace. The file is
// JSON lines, mode 0600, appended to and fsync'd before the spool moves past
// the message.
type DeadLetter struct {
	// Time is when the message was dead-lettered.
	Time time.Time `json:"time"`
	// Error is why: the broker's or kafka-go's error text.
	Error string `json:"error"`
	// Topic is the Kafka topic the message was meant for ("" when the spool
	// record itself could not be decoded).
	Topic string `json:"topic,omitempty"`
	// Key is the message key when it is valid UTF-8, else KeyB64 holds it.
	Key    string `json:"key,omitempty"`
	KeyB64 []byte `json:"key_b64,omitempty"`
	// EventID, Schema, BootID and EventTime are the message's headers and
	// timestamp.
	EventID   string    `json:"event_id,omitempty"`
	Schema    string    `json:"schema,omitempty"`
	BootID    string    `json:"boot_id,omitempty"`
	EventTime time.Time `json:"event_time,omitzero"`
	// Value is the original JSON object, unchanged, when it is valid JSON;
	// otherwise (or for an undecodable spool record) ValueB64 holds the raw
	// bytes.
	Value    json.RawMessage `json:"value,omitempty"`
	ValueB64 []byte          `json:"value_b64,omitempty"`
}

// deadLetterFile appends DeadLetter lines to a file of at most max bytes.
// Each Append opens the file, takes an exclusive flock on it, writes,
// fsyncs and closes it: dead letters are rare, and `auditns deadletter
// resend` may meanwhile have moved the file away (see ResendDeadLetters).
type deadLetterFile struct {
	path string
	max  int64

	mu  sync.Mutex
	buf []byte
}

func newDeadLetterFile(path string, max int64) *deadLetterFile {
	return &deadLetterFile{path: path, max: max}
}

// newDeadLetter fills a DeadLetter for m refused with err on topic.
func newDeadLetter(now time.Time, topic string, m *Message, err error) DeadLetter {
	d := DeadLetter{
		Time:      now.UTC(),
		Error:     err.Error(),
		Topic:     topic,
		EventID:   m.ID,
		Schema:    m.Schema,
		BootID:    m.BootID,
		EventTime: m.Time,
	}
	if m.Key != nil {
		if utf8.Valid(m.Key) {
			d.Key = string(m.Key)
		} else {
			d.KeyB64 = m.Key
		}
	}
	if json.Valid(m.Value) {
		d.Value = m.Value
	} else {
		d.ValueB64 = m.Value
	}
	return d
}

// Append writes entries and fsyncs the file: when it returns, the entries
// it did not count in lost are durable. lost is how many did not fit under
// the size cap (the last ones), or all of them with an error.
func (d *deadLetterFile) Append(entries []DeadLetter) (lost int, err error) {
	if len(entries) == 0 {
		return 0, nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	f, err := openLockedDeadLetter(d.path)
	if err != nil {
		return len(entries), err
	}
	defer f.Close() // also releases the flock
	fi, err := f.Stat()
	if err != nil {
		return len(entries), fmt.Errorf("dead-letter file %s: %w", d.path, err)
	}
	size := fi.Size()
	b := d.buf[:0]
	kept := 0
	for i := range entries {
		line, err := json.Marshal(&entries[i])
		if err != nil {
			return len(entries), fmt.Errorf("dead-letter file %s: encode: %w", d.path, err)
		}
		if d.max > 0 && size+int64(len(b)+len(line)+1) > d.max {
			break
		}
		b = append(b, line...)
		b = append(b, '\n')
		kept++
	}
	if cap(b) <= 1<<20 {
		d.buf = b
	}
	if kept == 0 {
		return len(entries), nil
	}
	if _, err := f.Write(b); err != nil {
		return len(entries), fmt.Errorf("dead-letter file %s: %w", d.path, err)
	}
	if err := f.Sync(); err != nil {
		return len(entries), fmt.Errorf("dead-letter file %s: %w", d.path, err)
	}
	return len(entries) - kept, nil
}

// openLockedDeadLetter opens path for appending (creating it and its
// directory, mode 0600 and 0700) and takes an exclusive flock on it. If the
// file was renamed away before the lock was granted (a resend took it), it
// opens the new one.
func openLockedDeadLetter(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("dead-letter file: %w", err)
	}
	for {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("dead-letter file: %w", err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
			f.Close()
			return nil, fmt.Errorf("dead-letter file %s: lock: %w", path, err)
		}
		held, err1 := f.Stat()
		named, err2 := os.Stat(path)
		if err1 == nil && err2 == nil && os.SameFile(held, named) {
			// An existing file keeps its mode on open: tighten it, the
			// values are audit events.
			if err := f.Chmod(0o600); err != nil {
				f.Close()
				return nil, fmt.Errorf("dead-letter file: %w", err)
			}
			return f, nil
		}
		f.Close()
	}
}

// Close releases nothing: Append keeps no file open.
func (d *deadLetterFile) Close() error { return nil }
