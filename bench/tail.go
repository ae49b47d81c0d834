package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// benchKey is the key of the one rule each run loads.
const benchKey = "auditns-bench"

// isBenchEvent tells whether a JSON line of auditns's output is an event
// of the workload (not the CONFIG_CHANGE events of loading and removing the
// rule, which carry the same key, nor registry, loss or state records).
// An empty syscallName takes any syscall (the mixed workload).
func isBenchEvent(line []byte, syscallName string) bool {
	name := `"syscall":{"name":"`
	if syscallName != "" {
		name += syscallName + `"`
	}
	return bytes.Contains(line, []byte(`"`+benchKey+`"`)) && bytes.Contains(line, []byte(name))
}

// eventArgs decodes what the latency measurement needs from an event.
type eventArgs struct {
	Event struct {
		ID string `json:"id"`
	} `json:"event"`
	Auditns struct {
		Syscall struct {
			Args []string `json:"args"`
		} `json:"syscall"`
	} `json:"auditns"`
}

// eventA1 returns a1 of an event (the generator's clock, ns) and its id.
func eventA1(line []byte) (int64, string, bool) {
	var ev eventArgs
	if err := json.Unmarshal(line, &ev); err != nil || len(ev.Auditns.Syscall.Args) < 2 {
		return 0, "", false
	}
	v, err := strconv.ParseUint(strings.TrimPrefix(ev.Auditns.Syscall.Args[1], "0x"), 16, 64)
	if err != nil {
		return 0, "", false
	}
	return int64(v), ev.Event.ID, true
}

// lineCounter counts the workload's events in a growing file, reading
// only what was appended since the last call.
type lineCounter struct {
	path    string
	syscall string
	off     int64
	partial []byte
	n       int64
}

func (c *lineCounter) update() (int64, error) {
	f, err := os.Open(c.path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return c.n, nil
		}
		return c.n, err
	}
	defer f.Close()
	if _, err := f.Seek(c.off, io.SeekStart); err != nil {
		return c.n, err
	}
	buf := make([]byte, 4<<20)
	for {
		k, err := f.Read(buf)
		if k > 0 {
			c.off += int64(k)
			c.consume(buf[:k])
		}
		if err == io.EOF {
			return c.n, nil
		}
		if err != nil {
			return c.n, err
		}
	}
}

func (c *lineCounter) consume(b []byte) {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			c.partial = append(c.partial, b...)
			return
		}
		line := b[:i]
		if len(c.partial) > 0 {
			line = append(c.partial, line...)
			c.partial = c.partial[:0]
		}
		if isBenchEvent(line, c.syscall) {
			c.n++
		}
		b = b[i+1:]
	}
}

// fileTail follows a file with inotify and calls fn for every complete
// line with the time the read that returned it ended: the moment the line
// was visible to a reader of the file.
type fileTail struct {
	stop chan struct{}
	done chan error
}

func startFileTail(path string, fn func(at time.Time, line []byte)) (*fileTail, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, err
	}
	if _, err := unix.InotifyAddWatch(fd, path, unix.IN_MODIFY); err != nil {
		unix.Close(fd)
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		unix.Close(fd)
		f.Close()
		return nil, err
	}
	t := &fileTail{stop: make(chan struct{}), done: make(chan error, 1)}
	go func() {
		defer unix.Close(fd)
		defer f.Close()
		evbuf := make([]byte, 64<<10)
		buf := make([]byte, 1<<20)
		var partial []byte
		drain := func() error {
			for {
				k, err := f.Read(buf)
				at := time.Now()
				b := buf[:k]
				for len(b) > 0 {
					i := bytes.IndexByte(b, '\n')
					if i < 0 {
						partial = append(partial, b...)
						break
					}
					line := b[:i]
					if len(partial) > 0 {
						line = append(partial, line...)
						partial = partial[:0]
					}
					fn(at, line)
					b = b[i+1:]
				}
				if err == io.EOF || k == 0 {
					return nil
				}
				if err != nil {
					return err
				}
			}
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			select {
			case <-t.stop:
				t.done <- drain()
				return
			default:
			}
			n, err := unix.Poll(fds, 50)
			if err != nil && err != unix.EINTR {
				t.done <- err
				return
			}
			if n > 0 {
				for {
					if _, err := unix.Read(fd, evbuf); err != nil {
						break
					}
				}
				if err := drain(); err != nil {
					t.done <- err
					return
				}
			}
		}
	}()
	return t, nil
}

func (t *fileTail) close() error {
	close(t.stop)
	return <-t.done
}

// latencyStats summarises latencies.
type latencyStats struct {
	N             int     `json:"n"`
	P50, P99, Max float64 `json:"-"` // milliseconds
	Origin, Point string  `json:"-"`
}

func summarise(ns []int64) *latencyStats {
	if len(ns) == 0 {
		return &latencyStats{P50: math.NaN(), P99: math.NaN(), Max: math.NaN()}
	}
	s := append([]int64(nil), ns...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	q := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		if i < 0 {
			i = 0
		}
		return float64(s[i]) / 1e6
	}
	return &latencyStats{N: len(s), P50: q(0.50), P99: q(0.99), Max: float64(s[len(s)-1]) / 1e6}
}

// stalls describes the episodes in which events took longer than limit:
// runs of consecutive events (in generator time) over the limit, split
// where 50 ms of generator time pass without one. It says how many
// events, in how many episodes, and when the worst ones started (seconds
// from the first event), so that a periodic stall shows its period.
func stalls(origin, lat []int64, limit time.Duration) string {
	if len(origin) == 0 || len(origin) != len(lat) {
		return ""
	}
	idx := make([]int, len(origin))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return origin[idx[a]] < origin[idx[b]] })
	t0 := origin[idx[0]]
	type episode struct {
		start, end int64
		n          int
		worst      int64
	}
	var eps []episode
	over := 0
	for _, i := range idx {
		if lat[i] <= int64(limit) {
			continue
		}
		over++
		if k := len(eps) - 1; k >= 0 && origin[i]-eps[k].end <= int64(50*time.Millisecond) {
			eps[k].end, eps[k].n = origin[i], eps[k].n+1
			eps[k].worst = max(eps[k].worst, lat[i])
			continue
		}
		eps = append(eps, episode{origin[i], origin[i], 1, lat[i]})
	}
	if over == 0 {
		return fmt.Sprintf("no event over %v", limit)
	}
	var parts []string
	for k, e := range eps {
		if k == 12 {
			parts = append(parts, "...")
			break
		}
		parts = append(parts, fmt.Sprintf("%.2fs (%d, worst %.0f ms)", float64(e.start-t0)/1e9, e.n, float64(e.worst)/1e6))
	}
	return fmt.Sprintf("%d events over %v in %d episodes at %s", over, limit, len(eps), strings.Join(parts, ", "))
}
