package convert

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/auditns/auditns/internal/conform"
)

// corpora are published audit logs: go-libaudit's (Apache-2.0, in
// ../enrich/testdata with its licence).
func corpora(t *testing.T) []string {
	var files []string
	for _, pat := range []string{"../enrich/testdata/golibaudit-*.log", "../enrich/testdata/rhel7-normal.log"} {
		m, err := filepath.Glob(pat)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) < 10 {
		t.Fatalf("corpora missing: %v", files)
	}
	return files
}

type converted struct {
	Timestamp string `json:"@timestamp"`
	Event     struct {
		ID string `json:"id"`
	} `json:"event"`
	Host struct {
		Name string `json:"name"`
	} `json:"host"`
	Auditd struct {
		MessageType string `json:"message_type"`
	} `json:"auditd"`
	Auditns struct {
		NS    any    `json:"ns"`
		NSSrc string `json:"ns_src"`
	} `json:"auditns"`
}

// Every published log converts into events that conform to ECS and the
// JSON Schema, over more than 20 record types, none with namespaces; the
// one line that is no record (go-libaudit's test of a broken header) is
// reported.
func TestConvertPublishedCorpora(t *testing.T) {
	c, err := conform.New()
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]int{}
	events := 0
	for _, path := range corpora(t) {
		in, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, raw := range []bool{false, true} {
			var out, errs bytes.Buffer
			st, err := Convert(bytes.NewReader(in), &out, Options{BootID: "b", Raw: raw, Errors: &errs})
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			want := ""
			if filepath.Base(path) == "rhel7-normal.log" {
				// type=UNKNOWN[1329] msg=?
				want = "convert: line 31: expected msg=audit(...) after the type\n"
			}
			if errs.String() != want || st.Malformed != strings.Count(want, "\n") {
				t.Errorf("%s: %d malformed lines: %s", path, st.Malformed, errs.String())
			}
			if st.Events == 0 || st.Records != st.Lines-st.Skipped-st.Malformed {
				t.Errorf("%s: %+v", path, st)
			}
			n, v := c.Lines(out.Bytes())
			if n != st.Events {
				t.Errorf("%s: %d events written, %d counted", path, n, st.Events)
			}
			for _, x := range v {
				t.Errorf("%s: %s", path, x)
			}
			if raw {
				continue
			}
			events += n
			for _, line := range bytes.Split(bytes.TrimSpace(out.Bytes()), []byte("\n")) {
				var e converted
				if err := json.Unmarshal(line, &e); err != nil {
					t.Fatal(err)
				}
				types[e.Auditd.MessageType]++
				if e.Auditns.NS != nil || e.Auditns.NSSrc != "unknown" || !strings.HasPrefix(e.Event.ID, "b:") || e.Host.Name != "unknown" {
					t.Errorf("%s: %s", path, line)
				}
			}
		}
	}
	var names []string
	for k := range types {
		names = append(names, k)
	}
	sort.Strings(names)
	t.Logf("%d events, %d record types: %v", events, len(types), names)
	if len(types) < 20 {
		t.Errorf("only %d record types: %v", len(types), names)
	}
}

// Records of several nodes (auditd's name_format) are assembled per node,
// their sequence numbers being the node's; lines that are not records
// are reported with their numbers; auditd's enriched format and
// ausearch's separators are read.
func TestConvertNodesAndMalformedLines(t *testing.T) {
	in := strings.Join([]string{
		"----",
		"time->Sat Nov 28 12:00:00 2026",
		`node=web-1 type=SYSCALL msg=audit(1795868700.001:7): arch=c000003e syscall=59 success=yes exit=0 a0=1 a1=2 a2=3 a3=4 items=1 ppid=1 pid=20 auid=1000 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=pts0 ses=3 comm="true" exe="/usr/bin/true" key=(null)` + "\x1dARCH=x86_64 SYSCALL=execve AUID=\"alice\" UID=\"root\"",
		`node=web-2 type=SYSCALL msg=audit(1795868700.002:7): arch=c000003e syscall=2 success=no exit=-13 a0=1 a1=2 a2=3 a3=4 items=1 ppid=1 pid=30 auid=1000 uid=1000 gid=1000 euid=1000 suid=1000 fsuid=1000 egid=1000 sgid=1000 fsgid=1000 tty=(none) ses=3 comm="cat" exe="/usr/bin/cat" key=(null)`,
		"garbage",
		`node=web-1 type=PROCTITLE msg=audit(1795868700.001:7): proctitle=74727565`,
		`type=NOSUCHTYPE msg=audit(1795868700.003:8): x=1`,
		`type=SYSCALL msg=audit(17958x): x=1`,
		`node=web-2 type=PROCTITLE msg=audit(1795868700.002:7): proctitle=636174`,
		"node=",
	}, "\n") + "\n"
	var out, errs bytes.Buffer
	st, err := Convert(strings.NewReader(in), &out, Options{Errors: &errs})
	if err != nil {
		t.Fatal(err)
	}
	if st.Events != 2 || st.Malformed != 4 || st.Records != 4 || st.Skipped != 2 || st.Lines != 10 {
		t.Fatalf("%+v\n%s", st, errs.String())
	}
	for _, want := range []string{"line 5: ", "line 7: unknown record type", "line 8: msg=", "line 10: "} {
		if !strings.Contains(errs.String(), "convert: "+want) {
			t.Errorf("no %q in\n%s", want, errs.String())
		}
	}
	hosts := map[string]string{}
	for _, line := range bytes.Split(bytes.TrimSpace(out.Bytes()), []byte("\n")) {
		var e struct {
			Host struct {
				Name string `json:"name"`
			} `json:"host"`
			Process struct {
				Name string `json:"name"`
			} `json:"process"`
		}
		if err := json.Unmarshal(line, &e); err != nil {
			t.Fatal(err)
		}
		hosts[e.Host.Name] = e.Process.Name
	}
	if hosts["web-1"] != "true" || hosts["web-2"] != "cat" {
		t.Fatalf("%v\n%s", hosts, out.String())
	}
	// This host's user names are not the log's: only root's is known,
	// and those auditd's enriched format gave, for the node that gave
	// them.
	if !strings.Contains(out.String(), `"user":{"id":"1000","effective":{"id":"1000"}`) ||
		!strings.Contains(out.String(), `"user":{"id":"0","name":"root"`) ||
		strings.Count(out.String(), `"audit":{"id":"1000","name":"alice"}`) != 1 {
		t.Fatalf("names:\n%s", out.String())
	}
}

// A line longer than the limit is reported, and the lines after it are
// read.
func TestLineReaderLongLine(t *testing.T) {
	in := "a\n" + strings.Repeat("x", 100) + "\nb\n" + strings.Repeat("y", 101) + "\n" + strings.Repeat("z", 100)
	lr := NewLineReader(strings.NewReader(in), 100)
	var got []string
	for {
		line, err := lr.Next()
		if err == io.EOF {
			break
		}
		if errors.Is(err, ErrLongLine) {
			got = append(got, "LONG")
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(line))
	}
	want := []string{"a", strings.Repeat("x", 100), "b", "LONG", strings.Repeat("z", 100)}
	if strings.Join(got, ",") != strings.Join(want, ",") || lr.N != 5 {
		t.Fatalf("%d lines %q", lr.N, got)
	}
}

// Whatever the input, the line reader gives back its lines, and Convert
// neither fails nor writes anything but JSON events.
func FuzzConvert(f *testing.F) {
	f.Add([]byte("type=SYSCALL msg=audit(1.2:3): arch=c000003e syscall=59 success=yes exit=0 pid=1 uid=0\ntype=PROCTITLE msg=audit(1.2:3): proctitle=78\n"))
	f.Add([]byte("node=a type=EXECVE msg=audit(1.2:3): argc=2 a0=\"x\" a1_len=4 a1[0]=41 a1[1]=42\n\x1d\n----\n"))
	f.Add([]byte("type=USER_LOGIN msg=audit(1.2:4): pid=1 uid=0 msg='op=login acct=\"x\" addr=? res=failed'\ntype=UNKNOWN[1334] msg=audit(1.2:5): x"))
	f.Add([]byte("type=1300 msg=audit(9999999999.999:4294967295): \xff\x00\nnode= type=\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		lr := NewLineReader(bytes.NewReader(in), 64)
		var lines [][]byte
		for {
			line, err := lr.Next()
			if err == io.EOF {
				break
			}
			if err == nil {
				lines = append(lines, append([]byte(nil), line...))
			} else if !errors.Is(err, ErrLongLine) {
				t.Fatal(err)
			}
		}
		if lr.N != bytes.Count(in, []byte("\n"))+btoi(len(in) > 0 && in[len(in)-1] != '\n') {
			t.Fatalf("%d lines of %q", lr.N, in)
		}
		for _, line := range lines {
			if r, err := ParseLine(line); err == nil && !bytes.HasPrefix(r.Text, []byte("audit(")) {
				t.Fatalf("%q: text %q", line, r.Text)
			}
		}
		var out bytes.Buffer
		st, err := Convert(bytes.NewReader(in), &out, Options{Errors: io.Discard, Raw: true})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, line := range bytes.Split(out.Bytes(), []byte("\n")) {
			if len(line) == 0 {
				continue
			}
			n++
			if !json.Valid(line) {
				t.Fatalf("invalid JSON %q", line)
			}
		}
		if n != st.Events {
			t.Fatalf("%d events written, %d counted", n, st.Events)
		}
	})
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
