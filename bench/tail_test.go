package main

import (
	"testing"

	"github.com/auditns/auditns/internal/event"
)

// The measurement reads what the encoder writes: the workload's events by
// key and syscall, and a1 (the generator's clock).
func TestEventA1ReadsEncodedEvents(t *testing.T) {
	e := &event.Event{Schema: event.Schema, Event: event.Meta{ID: "b:9", Kind: event.KindEvent}, Tags: []string{benchKey},
		Syscall: &event.Syscall{Name: "getppid", Nr: 110, Args: []string{"0x1", "0x18a3f"}}}
	line := e.AppendJSON(nil)
	if !isBenchEvent(line, "getppid") || isBenchEvent(line, "execve") {
		t.Fatalf("isBenchEvent: %s", line)
	}
	if a1, id, ok := eventA1(line); !ok || a1 != 0x18a3f || id != "b:9" {
		t.Fatalf("eventA1: %d %q %v", a1, id, ok)
	}
}
