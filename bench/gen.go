package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"syscall"
	"time"
)

// genResult is what a generator prints on stdout when it is done.
type genResult struct {
	Calls   int     `json:"calls"`
	Seconds float64 `json:"seconds"`
	Rate    float64 `json:"rate"`
	Error   string  `json:"error,omitempty"`
}

// waitGo blocks until the bench writes one byte on stdin. EOF (the bench is
// gone or gave up) means: do nothing.
func waitGo() {
	var b [1]byte
	if n, _ := os.Stdin.Read(b[:]); n != 1 {
		os.Exit(3)
	}
}

// genSyscall is the syscall-storm generator: n getppid calls on one locked
// OS thread, at full speed or paced at rate calls/s. Each call carries its
// number in a0 and the generator's CLOCK_REALTIME in nanoseconds, read just
// before the call, in a1: getppid ignores its arguments, but the kernel's
// SYSCALL record prints a0..a3 from the registers, so every event says
// which call it was and when it was made (the origin of the latency
// measurement).
func genSyscall(args []string) {
	fs := flag.NewFlagSet("gen-syscall", flag.ExitOnError)
	n := fs.Int("n", 200000, "calls")
	rate := fs.Float64("rate", 0, "calls per second; 0 = as fast as possible")
	maxDur := fs.Duration("max", 120*time.Second, "stop after this long whatever the count")
	_ = fs.Parse(args)
	runtime.LockOSThread()
	waitGo()
	start := time.Now()
	deadline := start.Add(*maxDur)
	var interval time.Duration
	if *rate > 0 {
		interval = time.Duration(float64(time.Second) / *rate)
	}
	i := 0
	for i < *n {
		if interval > 0 {
			due := start.Add(time.Duration(i) * interval)
			if d := time.Until(due); d > 0 {
				time.Sleep(d)
			}
		}
		now := time.Now().UnixNano()
		syscall.RawSyscall(syscall.SYS_GETPPID, uintptr(i+1), uintptr(now), 0)
		i++
		if i&1023 == 0 && time.Now().After(deadline) {
			break
		}
	}
	report(i, time.Since(start), nil)
}

// genExec is the exec-storm generator: n fork+exec of /bin/true, one at a
// time, each waited for.
func genExec(args []string) {
	fs := flag.NewFlagSet("gen-exec", flag.ExitOnError)
	n := fs.Int("n", 3000, "execs")
	path := fs.String("path", "/bin/true", "program to exec")
	maxDur := fs.Duration("max", 120*time.Second, "stop after this long whatever the count")
	_ = fs.Parse(args)
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		report(0, 0, err)
		return
	}
	fd := devnull.Fd()
	attr := &syscall.ProcAttr{Files: []uintptr{fd, fd, fd}, Env: []string{}}
	argv := []string{*path}
	waitGo()
	start := time.Now()
	deadline := start.Add(*maxDur)
	i := 0
	for i < *n {
		pid, err := syscall.ForkExec(*path, argv, attr)
		if err != nil {
			report(i, time.Since(start), err)
			return
		}
		var ws syscall.WaitStatus
		for {
			_, err = syscall.Wait4(pid, &ws, 0, nil)
			if err != syscall.EINTR {
				break
			}
		}
		i++
		if time.Now().After(deadline) {
			break
		}
	}
	// Only devnull's fd is used in the loop: without this the File may be
	// collected, and its finalizer close the fd, in the middle of the storm.
	runtime.KeepAlive(devnull)
	report(i, time.Since(start), nil)
}

func report(calls int, d time.Duration, err error) {
	r := genResult{Calls: calls, Seconds: d.Seconds()}
	if d > 0 {
		r.Rate = float64(calls) / d.Seconds()
	}
	if err != nil {
		r.Error = err.Error()
	}
	b, _ := json.Marshal(r)
	fmt.Println(string(b))
}
