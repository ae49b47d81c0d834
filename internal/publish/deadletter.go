package publish

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
	"unicode/utf8"
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

// deadLetterFile appends DeadLetter lines to a file, opened on first use.
type deadLetterFile struct {
	path string

	mu  sync.Mutex
	f   *os.File
	buf []byte
}

func newDeadLetterFile(path string) *deadLetterFile {
	return &deadLetterFile{path: path}
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

// Append writes entries and fsyncs the file: when it returns nil, they are
// durable.
func (d *deadLetterFile) Append(entries []DeadLetter) error {
	if len(entries) == 0 {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.f == nil {
		if err := os.MkdirAll(filepath.Dir(d.path), 0o700); err != nil {
			return fmt.Errorf("dead-letter file: %w", err)
		}
		f, err := os.OpenFile(d.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return fmt.Errorf("dead-letter file: %w", err)
		}
		// An existing file keeps its mode on open: tighten it, the values
		// are audit events.
		if err := f.Chmod(0o600); err != nil {
			f.Close()
			return fmt.Errorf("dead-letter file: %w", err)
		}
		d.f = f
	}
	b := d.buf[:0]
	for i := range entries {
		line, err := json.Marshal(&entries[i])
		if err != nil {
			return fmt.Errorf("dead-letter file %s: encode: %w", d.path, err)
		}
		b = append(b, line...)
		b = append(b, '\n')
	}
	if cap(b) <= 1<<20 {
		d.buf = b
	}
	if _, err := d.f.Write(b); err != nil {
		return fmt.Errorf("dead-letter file %s: %w", d.path, err)
	}
	if err := d.f.Sync(); err != nil {
		return fmt.Errorf("dead-letter file %s: %w", d.path, err)
	}
	return nil
}

// Close closes the file if it was opened.
func (d *deadLetterFile) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.f == nil {
		return nil
	}
	err := d.f.Close()
	d.f = nil
	return err
}
