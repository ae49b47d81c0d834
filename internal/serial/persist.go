package serial

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// compactLocked rewrites registry.log with one line per record (dropping
// superseded lines and any torn tail) through a temporary file and an
// atomic rename. With closing, it ends with a clean-shutdown marker. Called
// with r.mu held, and r.syncMu held when other goroutines may be running.
func (r *Registry) compactLocked(closing bool) error {
	at := MakeTime(time.Now())
	buf := appendLine(nil, &logLine{T: "boot", V: formatVersion, BootID: r.bootID, Host: r.host.Name, Method: r.method, At: &at})
	r.reserved = max(r.reserved, r.next-1)
	buf = appendLine(buf, &logLine{T: "reserve", Upto: r.reserved})
	for _, e := range r.entries {
		if e == nil {
			continue
		}
		l := logLine{T: "ns", Rec: &e.rec}
		if e.wit.PID > 0 && e.rec.Gone == nil && !e.rec.IsInit {
			w := e.wit
			l.W = &w
		}
		buf = appendLine(buf, &l)
	}
	if closing {
		buf = appendLine(buf, &logLine{T: "close", Next: r.next})
	}
	if err := writeFileSync(r.dir, logName, buf); err != nil {
		return err
	}
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
	if !closing {
		f, err := os.OpenFile(filepath.Join(r.dir, logName), os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return err
		}
		r.f = f
	}
	r.synced.Store(r.written)
	r.appended = 0
	return nil
}

// appendLocked writes one line (without fsync) and returns its sequence
// number, or 0 after a write error.
func (r *Registry) appendLocked(l *logLine) uint64 {
	if r.writeErr != nil || r.f == nil {
		return 0
	}
	if _, err := r.f.Write(appendLine(nil, l)); err != nil {
		r.writeErr = err
		r.log.Error("namespace registry: write failed; no new serials until the state directory can be written again", "dir", r.dir, "error", err)
		return 0
	}
	r.written++
	r.appended++
	return r.written
}

// writeRecLocked appends e's current record; with sync the returned sequence
// must be made durable (waitDurable) before the change is relied on.
func (r *Registry) writeRecLocked(e *entry, sync bool) uint64 {
	l := logLine{T: "ns", Rec: &e.rec}
	if e.wit.PID > 0 && !e.rec.IsInit && e.rec.Gone == nil {
		w := e.wit
		l.W = &w
	}
	seq := r.appendLocked(&l)
	if seq != 0 {
		e.lastEmit = e.rec.LastSeen.Time
		r.queueLocked(e, sync, seq)
	}
	return seq
}

// queueLocked queues e's record for OnRecord.
func (r *Registry) queueLocked(e *entry, sync bool, seq ...uint64) {
	if r.opts.OnRecord == nil {
		return
	}
	it := emitItem{rec: e.rec.clone(), sync: sync}
	if len(seq) > 0 {
		it.seq = seq[0]
	}
	r.pending = append(r.pending, it)
	r.hasPending.Store(true)
}

// allocLocked hands out the next serial, first writing a reserve line when
// the reserved block is used up. The reserve line and the record line that
// follows become durable with the same fsync.
func (r *Registry) allocLocked() (uint64, error) {
	if r.closed {
		return 0, ErrClosed
	}
	if r.writeErr != nil {
		return 0, errNotDurable(r.dir, r.writeErr)
	}
	s := r.next
	if s > r.reserved {
		upto := s + r.opts.ReserveBlock - 1
		if r.appendLocked(&logLine{T: "reserve", Upto: upto}) == 0 {
			return 0, errNotDurable(r.dir, r.writeErr)
		}
		r.reserved = upto
	}
	r.next++
	return s, nil
}

// waitDurable returns once every line up to seq is on disk (group commit:
// one fsync covers every line written before it started).
func (r *Registry) waitDurable(seq uint64) error {
	if r.synced.Load() >= seq {
		return nil
	}
	r.syncMu.Lock()
	defer r.syncMu.Unlock()
	if r.synced.Load() >= seq {
		return nil
	}
	r.mu.Lock()
	f, target, werr := r.f, r.written, r.writeErr
	r.mu.Unlock()
	if werr != nil {
		return errNotDurable(r.dir, werr)
	}
	if f == nil {
		return ErrClosed
	}
	if err := f.Sync(); err != nil {
		// After a failed fsync the kernel may have dropped the dirty pages
		// and a later fsync can succeed without them: stop issuing.
		r.mu.Lock()
		if r.writeErr == nil {
			r.writeErr = fmt.Errorf("fsync: %w", err)
		}
		r.mu.Unlock()
		r.log.Error("namespace registry: fsync failed; no new serials until the state directory can be written again", "dir", r.dir, "error", err)
		return errNotDurable(r.dir, err)
	}
	r.synced.Store(target)
	return nil
}

// deliver calls OnRecord for the queued records, in order, once they are
// durable.
func (r *Registry) deliver() {
	if r.opts.OnRecord == nil {
		return
	}
	r.emitMu.Lock()
	defer r.emitMu.Unlock()
	r.mu.Lock()
	items := r.pending
	r.pending = nil
	r.hasPending.Store(false)
	r.mu.Unlock()
	if len(items) == 0 {
		return
	}
	var need uint64
	for i := range items {
		if items[i].sync {
			need = max(need, items[i].seq)
		}
	}
	if need > 0 {
		if err := r.waitDurable(need); err != nil {
			r.log.Error("namespace registry: records not published because they are not durable", "count", len(items), "error", err)
			return
		}
	}
	for i := range items {
		rec := items[i].rec
		r.opts.OnRecord(&rec)
		if items[i].e != nil {
			items[i].e.published.Store(true)
		}
	}
}

// recoverWrites, after a failed write or fsync, rewrites the whole log
// from memory (new file, fsync, rename, directory fsync: what a failed
// fsync may have dropped is written again); once that succeeds, serials
// are issued again.
func (r *Registry) recoverWrites() {
	r.syncMu.Lock()
	defer r.syncMu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.writeErr == nil {
		return
	}
	if err := r.compactLocked(false); err != nil {
		return
	}
	r.log.Info("namespace registry: writing again", "dir", r.dir, "after", r.writeErr.Error())
	r.writeErr = nil
}

// Health reports a state directory the registry cannot write, while it
// lasts.
func (r *Registry) Health() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.writeErr != nil {
		return fmt.Errorf("state_dir %s: the namespace registry cannot write (no new serials until it can): %v", r.dir, r.writeErr)
	}
	return nil
}

// maybeCompact rewrites the log when superseded lines dominate it.
func (r *Registry) maybeCompact() {
	r.syncMu.Lock()
	defer r.syncMu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.writeErr != nil || r.appended < max(4096, 4*len(r.entries)) {
		return
	}
	if err := r.compactLocked(false); err != nil {
		r.writeErr = err
		r.log.Error("namespace registry: compaction failed; no new serials until the state directory can be written again", "dir", r.dir, "error", err)
	}
}
