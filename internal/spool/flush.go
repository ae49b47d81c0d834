package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Sync makes everything appended and acknowledged so far durable now: it
// fsyncs the segments, writes the checkpoint and deletes wholly acknowledged
// segments. It also reports an fsync error met in the background since the
// last Sync (a later fsync of the same file can succeed although the data
// was lost).
func (s *Spool) Sync() error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return ErrClosed
	}
	err := s.flush(true, true)
	s.mu.Lock()
	if s.syncErr != nil && s.syncErr != err {
		err = errors.Join(s.syncErr, err)
	}
	s.syncErr = nil
	s.mu.Unlock()
	return err
}

// flush does the pending background I/O: group fsync (when due or forced),
// closing sealed files, deleting segments, and the checkpoint (when due or
// forced). It never holds s.mu during I/O.
func (s *Spool) flush(forceData, forceCkpt bool) error {
	_, err := s.flushWait(forceData, forceCkpt)
	return err
}

// flushWait is flush, and returns how long until the next flush is due (0:
// nothing pending).
func (s *Spool) flushWait(forceData, forceCkpt bool) (time.Duration, error) {
	s.ioMu.Lock()
	defer s.ioMu.Unlock()

	s.mu.Lock()
	now := time.Now()
	files := s.flushFiles[:0]
	nSealed := 0
	var wait time.Duration
	doData := forceData || (s.dirty && now.Sub(s.dirtySince) >= s.opts.SyncInterval)
	dirSync := false
	if doData {
		files = append(files, s.toSync...)
		nSealed = len(files)
		clear(s.toSync)
		s.toSync = s.toSync[:0]
		if s.active != nil {
			files = append(files, s.active)
		}
		s.dirty = false
		dirSync, s.dirDirty = s.dirDirty, false
	} else if s.dirty {
		wait = s.opts.SyncInterval - now.Sub(s.dirtySince)
	}
	toClose := s.toClose
	s.toClose = nil
	unlink := s.toUnlink
	s.toUnlink = nil
	ckpt, ckptPos := false, s.ack
	if s.ack != s.ckptPos {
		if forceCkpt || now.Sub(s.ckptAt) >= s.opts.CheckpointInterval {
			ckpt = true
		} else if w := s.opts.CheckpointInterval - now.Sub(s.ckptAt); wait == 0 || w < wait {
			wait = w
		}
	}
	s.mu.Unlock()

	var firstErr error
	fail := func(err error) {
		if firstErr == nil {
			firstErr = err
		}
	}
	var syncErrs int64
	for i, f := range files {
		if err := f.Sync(); err != nil {
			syncErrs++
			s.log.Error("spool: fsync failed; records since the last good fsync may be lost on power failure", "file", f.Name(), "err", err)
			fail(fmt.Errorf("spool: fsync %s: %w", f.Name(), err))
		}
		if i < nSealed {
			f.Close()
		}
		files[i] = nil
	}
	s.flushFiles = files[:0]
	for _, f := range toClose {
		f.Close()
	}
	for _, seq := range unlink {
		if err := os.Remove(s.segPath(seq)); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Error("spool: cannot delete segment", "segment", s.segPath(seq), "err", err)
			fail(err)
		}
	}
	var ckptErr error
	dirSynced := false
	if ckpt {
		if dirSynced, ckptErr = s.writeCheckpoint(ckptPos); ckptErr != nil {
			s.log.Error("spool: cannot write checkpoint", "dir", s.opts.Dir, "err", ckptErr)
			fail(ckptErr)
		}
	}
	if (dirSync || len(unlink) > 0) && !dirSynced {
		if err := s.dir.Sync(); err != nil {
			syncErrs++
			fail(fmt.Errorf("spool: fsync %s: %w", s.opts.Dir, err))
		}
	}

	s.mu.Lock()
	s.syncErrs += syncErrs
	if syncErrs > 0 && s.syncErr == nil {
		s.syncErr = firstErr
	}
	if ckpt {
		s.ckptAt = now
		if ckptErr == nil {
			s.ckptPos = ckptPos
		} else if wait == 0 || s.opts.CheckpointInterval < wait {
			wait = s.opts.CheckpointInterval
		}
	}
	if s.ack == s.ckptPos {
		s.ackKicked = false
	} else if wait == 0 {
		wait = s.opts.CheckpointInterval // acknowledged meanwhile
	}
	if s.dirty && wait == 0 {
		wait = s.opts.SyncInterval
	}
	s.mu.Unlock()
	return wait, firstErr
}

// writeCheckpoint durably stores pos in the checkpoint file. The first
// write after Open (or after a failed write) replaces the file
// atomically: a new file, fsync'd, renamed over the old one, and the
// directory fsync'd (dirSynced); that repairs a damaged checkpoint. Later
// writes overwrite its 28 bytes in place and fdatasync the file: one fsync
// instead of two, and no open, truncate or rename. A write in place that a
// power loss tears (28 bytes in one sector: not expected of a disk) leaves a
// checkpoint whose CRC fails, and recovery then delivers the spool again
// from its oldest segment: duplicates, never a loss.
func (s *Spool) writeCheckpoint(pos Pos) (dirSynced bool, err error) {
	var b [ckptSize]byte
	copy(b[:], ckptMagic)
	binary.LittleEndian.PutUint64(b[8:], pos.Segment)
	binary.LittleEndian.PutUint64(b[16:], uint64(pos.Offset))
	binary.LittleEndian.PutUint32(b[24:], crc32.Checksum(b[:24], castagnoli))
	path := filepath.Join(s.opts.Dir, ckptName)
	if f := s.ckptFile; f != nil {
		_, err := f.WriteAt(b[:], 0)
		if err == nil {
			err = syscall.Fdatasync(int(f.Fd()))
		}
		if err == nil {
			return false, nil
		}
		// Start again with a new file next time.
		f.Close()
		s.ckptFile = nil
		return false, err
	}
	tmp := filepath.Join(s.opts.Dir, ckptTmpName)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return false, err
	}
	if _, err := f.Write(b[:]); err != nil {
		f.Close()
		return false, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return false, err
	}
	if err := os.Rename(tmp, path); err != nil {
		f.Close()
		return false, err
	}
	if err := s.dir.Sync(); err != nil {
		f.Close()
		return true, err
	}
	// The renamed file is the checkpoint: keep it for writes in place.
	s.ckptFile = f
	return true, nil
}

// background runs the flusher: group fsync and checkpoints.
func (s *Spool) background() {
	defer close(s.bgDone)
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		select {
		case <-s.quit:
			t.Stop()
			return
		case <-s.kick:
		case <-t.C:
		}
		wait, _ := s.flushWait(false, false) // errors are logged and counted
		t.Stop()
		if wait > 0 {
			t.Reset(wait)
		}
	}
}

// Close fsyncs the segments, writes the latest acknowledged position to the
// checkpoint and closes the files. A Next waiting in another goroutine
// returns ErrClosed. Closing twice is a no-op.
func (s *Spool) Close() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.closedCh)
	s.mu.Unlock()
	close(s.quit)
	<-s.bgDone

	err := s.flush(true, true)
	s.ioMu.Lock()
	if s.ckptFile != nil {
		s.ckptFile.Close()
		s.ckptFile = nil
	}
	s.ioMu.Unlock()

	s.mu.Lock()
	if s.active != nil {
		s.active.Close()
		s.active = nil
	}
	s.mu.Unlock()
	s.rmu.Lock()
	if s.rf != nil {
		s.rf.Close()
		s.rf = nil
	}
	s.rmu.Unlock()
	s.dir.Close()
	s.lock.Close() // releases the flock
	return err
}
