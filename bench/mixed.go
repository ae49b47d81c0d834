package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

// The mixed workload is what a host does, rather than one syscall repeated:
// several processes in parallel, each with its own command line, exec a
// program with varied arguments, open and openat files under a watched
// directory (reading and writing), connect to a loopback listener, call
// getppid and set their uid and gid (as root, to the ids they have). Records
// of one kind do not follow each other, pids, command lines, paths and
// arguments vary from one event to the next.
//
// Its directory (made by the bench before the rules are loaded):
//
//	DIR/bin/true        a copy of /bin/true, the program exec'd
//	DIR/files/...       mixedFiles files, opened
//
// and its rules: the generator's children's getppid, connect, setuid and
// setgid (by ppid), exec of DIR/bin (a watch, -p x) and opens under
// DIR/files (a watch, -p rw), all with the bench's key. The exec'd
// program's own opens (the dynamic loader's) are outside both watches.

// mixedFiles is the number of files under DIR/files.
const mixedFiles = 24

// mixedCycle is the order of one worker's operations, repeated: per 16
// events 5 getppid, 4 opens, 3 connects, 2 execs, a setuid and a setgid.
var mixedCycle = []byte("gocggoxgcuogxcso")

// mixedRules are the rules of the mixed workload for generator genPid.
func mixedRules(dir string, genPid int) []string {
	return []string{
		fmt.Sprintf("-a always,exit -F arch=b64 -S getppid,connect,setuid,setgid -F ppid=%d -k %s", genPid, benchKey),
		fmt.Sprintf("-w %s -p x -k %s", filepath.Join(dir, "bin"), benchKey),
		fmt.Sprintf("-w %s -p rw -k %s", filepath.Join(dir, "files"), benchKey),
	}
}

// makeMixedDir lays out the mixed workload's directory.
func makeMixedDir(dir string) error {
	for _, d := range []string{"bin", "files"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	prog, err := os.ReadFile("/bin/true")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "true"), prog, 0o755); err != nil {
		return err
	}
	for i := range mixedFiles {
		if err := os.WriteFile(mixedFile(dir, i), []byte(strings.Repeat("x", i)), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// mixedFile is the i-th file; names of varied length and shape.
func mixedFile(dir string, i int) string {
	names := []string{"app.conf", "session-%d.lock", "cache.%d.db", "var/log/service-%d.log", "id_%d", "x%d"}
	name := strings.ReplaceAll(fmt.Sprintf(names[i%len(names)], i), "/", "_")
	return filepath.Join(dir, "files", name)
}

// genMixed is the mixed workload's generator: it starts -procs workers
// (this binary, gen-mixed-worker, children of this process so that the
// ppid rule takes them), waits until they are ready, then lets them go
// when the bench says so, and reports the sum of the audited syscalls they
// made. It also owns the loopback listener they connect to.
func genMixed(args []string) {
	fs := flag.NewFlagSet("gen-mixed", flag.ExitOnError)
	n := fs.Int("n", 48000, "audited syscalls in all, over the workers")
	procs := fs.Int("procs", 6, "worker processes")
	dir := fs.String("dir", "", "the workload's directory (made by the bench)")
	maxDur := fs.Duration("max", 120*time.Second, "stop after this long whatever the count")
	_ = fs.Parse(args)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		report(0, 0, err)
		return
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	self, err := os.Executable()
	if err != nil {
		report(0, 0, err)
		return
	}
	type worker struct {
		cmd *exec.Cmd
		in  *os.File
		out *bufio.Reader
	}
	var ws []worker
	for w := range *procs {
		share := *n / *procs
		if w < *n%*procs {
			share++
		}
		// Command lines differ per worker, as processes on a host do.
		cmd := exec.Command(self, "gen-mixed-worker", "-id", strconv.Itoa(w), "-n", strconv.Itoa(share),
			"-dir", *dir, "-connect", ln.Addr().String(), "-max", maxDur.String(), "--role="+[]string{"web", "db", "cron", "backup", "agent", "shell"}[w%6])
		cmd.Stderr = os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		in, err := cmd.StdinPipe()
		if err != nil {
			report(0, 0, err)
			return
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			report(0, 0, err)
			return
		}
		if err := cmd.Start(); err != nil {
			report(0, 0, err)
			return
		}
		ws = append(ws, worker{cmd, in.(*os.File), bufio.NewReader(out)})
	}
	for _, w := range ws {
		if line, err := w.out.ReadString('\n'); err != nil || line != "READY\n" {
			report(0, 0, fmt.Errorf("worker not ready: %q %v", line, err))
			return
		}
	}
	// The bench loads the rules after this: the workers' start-up (the
	// fork before their exec runs getppid for Pdeathsig) is not audited.
	fmt.Println("READY")
	waitGo()
	start := time.Now()
	for _, w := range ws {
		w.in.Write([]byte{1})
		w.in.Close()
	}
	calls := 0
	var errs []error
	for _, w := range ws {
		line, err := w.out.ReadString('\n')
		var r genResult
		if err == nil {
			err = json.Unmarshal([]byte(line), &r)
		}
		if err == nil && r.Error != "" {
			err = errors.New(r.Error)
		}
		errs = append(errs, err, w.cmd.Wait())
		calls += r.Calls
	}
	report(calls, time.Since(start), errors.Join(errs...))
}

// mixedWorker is one worker of the mixed workload: n audited syscalls in
// the order of mixedCycle, on one locked OS thread (so that setuid and
// setgid are the one thread's syscall, not the runtime's all-threads
// broadcast), with arguments that vary from call to call.
func mixedWorker(args []string) {
	fs := flag.NewFlagSet("gen-mixed-worker", flag.ExitOnError)
	id := fs.Int("id", 0, "worker number")
	n := fs.Int("n", 8000, "audited syscalls")
	dir := fs.String("dir", "", "the workload's directory")
	addr := fs.String("connect", "", "the loopback listener")
	maxDur := fs.Duration("max", 120*time.Second, "stop after this long whatever the count")
	fs.String("role", "", "only there to vary the command line")
	_ = fs.Parse(args)
	runtime.LockOSThread()
	ap, err := net.ResolveTCPAddr("tcp", *addr)
	if err != nil {
		report(0, 0, err)
		return
	}
	sa := &syscall.SockaddrInet4{Port: ap.Port}
	copy(sa.Addr[:], ap.IP.To4())
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		report(0, 0, err)
		return
	}
	fd := devnull.Fd()
	attr := &syscall.ProcAttr{Files: []uintptr{fd, fd, fd}, Env: []string{"PATH=/usr/bin:/bin", "LANG=C"}}
	prog := filepath.Join(*dir, "bin", "true")
	files := make([]string, mixedFiles)
	for i := range files {
		files[i] = mixedFile(*dir, i)
	}
	uid, gid := uintptr(os.Getuid()), uintptr(os.Getgid())
	fmt.Println("READY")
	waitGo()
	start := time.Now()
	deadline := start.Add(*maxDur)
	var buf [64]byte
	i := 0
	for ; i < *n; i++ {
		k := i + *id
		switch mixedCycle[k%len(mixedCycle)] {
		case 'g':
			syscall.RawSyscall(syscall.SYS_GETPPID, uintptr(k), 0, 0)
		case 'o':
			f := files[(k*7+*id)%len(files)]
			mode := []int{syscall.O_RDONLY, syscall.O_WRONLY | syscall.O_APPEND, syscall.O_RDONLY | syscall.O_CLOEXEC}[k%3]
			var fd int
			if k%2 == 0 {
				fd, err = syscall.Open(f, mode, 0) // openat(AT_FDCWD, ...)
			} else {
				var p *byte
				if p, err = syscall.BytePtrFromString(f); err == nil {
					r, _, e := syscall.Syscall(syscall.SYS_OPEN, uintptr(unsafe.Pointer(p)), uintptr(mode), 0)
					fd = int(r)
					if e != 0 {
						err = e
					}
				}
			}
			if err != nil {
				report(i, time.Since(start), fmt.Errorf("open %s: %w", f, err))
				return
			}
			if mode&syscall.O_WRONLY == 0 {
				syscall.Read(fd, buf[:])
			}
			syscall.Close(fd)
		case 'c':
			s, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
			if err != nil {
				report(i, time.Since(start), err)
				return
			}
			err = syscall.Connect(s, sa)
			syscall.Close(s)
			if err != nil {
				report(i, time.Since(start), fmt.Errorf("connect %s: %w", *addr, err))
				return
			}
		case 'x':
			argv := []string{"true", "--worker=" + strconv.Itoa(*id), "-n", strconv.Itoa(k), strings.Repeat("a", k%13)}
			pid, err := syscall.ForkExec(prog, argv[:2+k%3], attr)
			if err != nil {
				report(i, time.Since(start), err)
				return
			}
			var ws syscall.WaitStatus
			for {
				if _, err = syscall.Wait4(pid, &ws, 0, nil); err != syscall.EINTR {
					break
				}
			}
		case 'u':
			if _, _, e := syscall.RawSyscall(syscall.SYS_SETUID, uid, 0, 0); e != 0 {
				report(i, time.Since(start), fmt.Errorf("setuid: %w", e))
				return
			}
		case 's':
			if _, _, e := syscall.RawSyscall(syscall.SYS_SETGID, gid, 0, 0); e != 0 {
				report(i, time.Since(start), fmt.Errorf("setgid: %w", e))
				return
			}
		}
		if i&255 == 0 && time.Now().After(deadline) {
			break
		}
	}
	runtime.KeepAlive(devnull)
	report(i, time.Since(start), nil)
}
