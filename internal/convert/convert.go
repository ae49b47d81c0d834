// Package convert turns audit logs written in the kernel's and auditd's
// text format (/var/log/audit/audit.log, `ausearch --raw`, `ausearch`)
// into auditns events, with the same assembler and enrichment as the
// daemon. For incident responders with old logs, and for testing the
// parser on other people's corpora.
//
// What cannot be known after the fact is left out: the namespaces
// (auditns.ns_src is "unknown"), the kernel release, user and group names
// but root's and those of auditd's enriched format, the boot (event ids are "<boot id>:<sequence>" with the boot
// id given, "unknown" by default). A line that is not a record is counted and reported with its
// number, never fatal.
package convert

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/elastic/go-libaudit/v2/auparse"

	"github.com/auditns/auditns/internal/assemble"
	"github.com/auditns/auditns/internal/enrich"
	"github.com/auditns/auditns/internal/event"
	"github.com/auditns/auditns/internal/record"
	"github.com/auditns/auditns/internal/render"
)

// Options configure Convert.
type Options struct {
	// HostName is host.name of every event; default the node= of its
	// records, "unknown" when they have none.
	HostName string
	// BootID qualifies the event ids; default "unknown".
	BootID string
	// Raw includes the records in event.original.
	Raw bool
	// Errors receives one line per malformed line (default os.Stderr);
	// after MaxReports of them only the count goes on.
	Errors     io.Writer
	MaxReports int
	// Logger receives the enricher's warnings; default discards them.
	Logger *slog.Logger
}

// Stats count what Convert read and wrote.
type Stats struct {
	Lines     int // lines read
	Records   int // records given to the assembler
	Events    int // events written
	Malformed int // lines that are not records
	Skipped   int // blank lines and ausearch's separators
}

// MaxLine is the longest line read; a longer one is malformed.
const MaxLine = 16 << 20

// Convert reads records from r and writes one JSON event per line to w.
// The error is about reading r or writing w; malformed lines are counted
// in Stats and reported to Options.Errors.
func Convert(r io.Reader, w io.Writer, opts Options) (Stats, error) {
	if opts.BootID == "" {
		opts.BootID = "unknown"
	}
	if opts.Errors == nil {
		opts.Errors = os.Stderr
	}
	if opts.MaxReports <= 0 {
		opts.MaxReports = 1000
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	c := &converter{opts: opts, out: bufio.NewWriterSize(w, 256<<10), nodes: map[string]*stream{}}
	defer c.close()
	lr := NewLineReader(r, MaxLine)
	for {
		line, err := lr.Next()
		if err == io.EOF {
			break
		}
		c.stats.Lines++
		if errors.Is(err, ErrLongLine) {
			c.malformed(lr.N, err.Error())
			continue
		}
		if err != nil {
			return c.stats, err
		}
		rec, err := ParseLine(line)
		switch {
		case errors.Is(err, errSkip):
			c.stats.Skipped++
			continue
		case err != nil:
			c.malformed(lr.N, err.Error())
			continue
		}
		s, err := c.stream(rec.Node)
		if err != nil {
			return c.stats, err
		}
		c.stats.Records++
		s.names.learn(rec.Text, rec.Enriched)
		s.asm.Push(rec.Type, rec.Text)
		if c.err != nil {
			return c.stats, c.err
		}
	}
	for _, s := range c.order {
		s.asm.Close()
	}
	if c.err != nil {
		return c.stats, c.err
	}
	if c.stats.Malformed > opts.MaxReports {
		fmt.Fprintf(opts.Errors, "convert: %d more malformed lines not reported\n", c.stats.Malformed-opts.MaxReports)
	}
	return c.stats, c.out.Flush()
}

type converter struct {
	opts  Options
	out   *bufio.Writer
	nodes map[string]*stream
	order []*stream
	stats Stats
	enc   event.Encoder
	ev    event.Event
	buf   []byte
	err   error
}

// stream is the assembler and enricher of one node's records: their
// sequence numbers are the node's own.
type stream struct {
	asm   *assemble.Assembler
	enr   *enrich.Enricher
	names logNames
}

func (c *converter) stream(node string) (*stream, error) {
	if s, ok := c.nodes[node]; ok {
		return s, nil
	}
	host := c.opts.HostName
	if host == "" {
		host = node
	}
	if host == "" {
		host = "unknown"
	}
	enr, err := enrich.New(enrich.Options{HostName: host, BootID: c.opts.BootID, Raw: c.opts.Raw, Offline: true,
		CacheSize: 1, Logger: c.opts.Logger})
	if err != nil {
		return nil, err
	}
	s := &stream{enr: enr, names: logNames{users: map[string]string{}, groups: map[string]string{}}}
	// Records of an event are written together; an event whose end
	// (PROCTITLE, EOE) never comes is written once 64 later ones started.
	s.asm = assemble.New(assemble.Options{MaxInFlight: 64, Logger: c.opts.Logger}, func(recs []record.Record) { c.emit(s, recs) }, nil)
	c.nodes[node] = s
	c.order = append(c.order, s)
	return s, nil
}

func (c *converter) emit(s *stream, recs []record.Record) {
	if c.err != nil {
		return
	}
	if err := s.enr.Enrich(recs, &c.ev); err != nil {
		return
	}
	s.names.fill(&c.ev)
	c.buf = c.enc.AppendJSON(c.buf[:0], &c.ev)
	c.buf = append(c.buf, '\n')
	if _, err := c.out.Write(c.buf); err != nil {
		c.err = err
		return
	}
	c.stats.Events++
}

func (c *converter) malformed(line int, why string) {
	c.stats.Malformed++
	if c.stats.Malformed <= c.opts.MaxReports {
		// why may quote the line, which is untrusted text.
		fmt.Fprintf(c.opts.Errors, "convert: line %d: %s\n", line, render.Escape(nil, why))
	}
}

func (c *converter) close() {
	for _, s := range c.order {
		s.enr.Close()
	}
}

// Record is one parsed line.
type Record struct {
	Node string // node= prefix (auditd's name_format), "" without
	Type uint16
	// Text is what follows "msg=": "audit(SEC.MSEC:SEQ): fields", as the
	// kernel sends it.
	Text []byte
	// Enriched is what auditd's enriched log format appended after a
	// 0x1d byte: its names of the record's ids (UID="root" ...).
	Enriched []byte
}

var errSkip = errors.New("not a record")

// ParseLine parses one line of an audit log:
//
//	[node=NAME ]type=TYPE msg=audit(SECONDS.MILLIS:SEQUENCE): FIELDS
//
// TYPE is a record type's name (SYSCALL), UNKNOWN[NUMBER] or a number.
// What auditd's enriched log format appends after a 0x1d byte (its
// interpretations of ids) is Enriched. Blank lines and ausearch's
// separators ("----", "time->...") return errSkip; Text is a view of
// line.
func ParseLine(line []byte) (Record, error) {
	line = bytes.TrimRight(line, "\r\n")
	var enriched []byte
	if i := bytes.IndexByte(line, 0x1d); i >= 0 {
		line, enriched = line[:i], line[i+1:]
	}
	line = bytes.TrimSpace(line)
	if len(line) == 0 || bytes.HasPrefix(line, []byte("----")) || bytes.HasPrefix(line, []byte("time->")) {
		return Record{}, errSkip
	}
	var r Record
	if rest, ok := bytes.CutPrefix(line, []byte("node=")); ok {
		sp := bytes.IndexByte(rest, ' ')
		if sp <= 0 {
			return Record{}, errors.New("node= without a record after it")
		}
		r.Node, line = string(rest[:sp]), bytes.TrimLeft(rest[sp:], " ")
	}
	rest, ok := bytes.CutPrefix(line, []byte("type="))
	if !ok {
		return Record{}, errors.New("expected type=TYPE msg=audit(...)")
	}
	sp := bytes.IndexByte(rest, ' ')
	if sp <= 0 {
		return Record{}, errors.New("type= without msg=")
	}
	typ, err := recordType(string(rest[:sp]))
	if err != nil {
		return Record{}, err
	}
	r.Type = typ
	text, ok := bytes.CutPrefix(bytes.TrimLeft(rest[sp:], " "), []byte("msg="))
	if !ok || !bytes.HasPrefix(text, []byte("audit(")) {
		return Record{}, errors.New("expected msg=audit(...) after the type")
	}
	if _, err := record.ParseHeader(text); err != nil {
		return Record{}, fmt.Errorf("msg=: %v", err)
	}
	r.Text, r.Enriched = text, enriched
	return r, nil
}

// recordType is the number of a record type's name.
func recordType(name string) (uint16, error) {
	if n, err := strconv.ParseUint(name, 10, 16); err == nil {
		return uint16(n), nil
	}
	t, err := auparse.GetAuditMessageType(name)
	if err != nil {
		return 0, fmt.Errorf("unknown record type %q", name)
	}
	return uint16(t), nil
}

// ErrLongLine is a line longer than the LineReader takes.
var ErrLongLine = errors.New("line too long")

// LineReader reads lines of any length up to a limit: a longer line is
// skipped whole and reported as ErrLongLine.
type LineReader struct {
	r   *bufio.Reader
	max int
	buf []byte
	// N is the number of the line Next returned last (from 1).
	N int
}

// NewLineReader returns a LineReader of r for lines up to max bytes.
func NewLineReader(r io.Reader, max int) *LineReader {
	return &LineReader{r: bufio.NewReaderSize(r, 64<<10), max: max}
}

// Next returns the next line without its newline, valid until the next
// call; io.EOF after the last.
func (l *LineReader) Next() ([]byte, error) {
	l.buf = l.buf[:0]
	long := false
	for {
		chunk, err := l.r.ReadSlice('\n')
		if !long {
			if len(l.buf)+len(chunk) > l.max+1 {
				long, l.buf = true, l.buf[:0]
			} else {
				l.buf = append(l.buf, chunk...)
			}
		}
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err == io.EOF:
			if len(l.buf) == 0 && !long {
				return nil, io.EOF
			}
		case err != nil:
			return nil, err
		}
		l.N++
		if long {
			return nil, ErrLongLine
		}
		return bytes.TrimSuffix(l.buf, []byte("\n")), nil
	}
}

// logNames are the user and group names auditd's enriched format gave the
// ids of a node's records: the log's own, which this host's databases
// need not know.
type logNames struct{ users, groups map[string]string }

// Fields whose names the enriched format gives: the record's key in upper
// case, and whether it is a group.
var enrichedIDs = map[string]bool{"UID": false, "AUID": false, "EUID": false, "SUID": false, "FSUID": false, "OUID": false,
	"GID": true, "EGID": true, "SGID": true, "FSGID": true, "OGID": true}

// learn reads the names of enriched (KEY="name" ...) for the ids of the
// record text.
func (n *logNames) learn(text, enriched []byte) {
	for len(enriched) > 0 {
		enriched = bytes.TrimLeft(enriched, " ")
		eq := bytes.IndexByte(enriched, '=')
		if eq <= 0 || eq+1 >= len(enriched) {
			return
		}
		if enriched[eq+1] != '"' {
			// An unquoted interpretation (ARCH=x86_64): not a name.
			sp := bytes.IndexByte(enriched, ' ')
			if sp < 0 {
				return
			}
			enriched = enriched[sp:]
			continue
		}
		key := string(enriched[:eq])
		end := bytes.IndexByte(enriched[eq+2:], '"')
		if end < 0 {
			return
		}
		name := string(enriched[eq+2 : eq+2+end])
		enriched = enriched[eq+2+end+1:]
		group, ok := enrichedIDs[key]
		if !ok || name == "" || name == "unset" || strings.HasPrefix(name, "unknown(") {
			continue
		}
		id := fieldValue(text, strings.ToLower(key))
		if id == "" {
			continue
		}
		if group {
			n.groups[id] = name
		} else {
			n.users[id] = name
		}
	}
}

// fieldValue is the value of the first " key=" field of text.
func fieldValue(text []byte, key string) string {
	i := bytes.Index(text, []byte(" "+key+"="))
	if i < 0 {
		return ""
	}
	v := text[i+len(key)+2:]
	if sp := bytes.IndexByte(v, ' '); sp >= 0 {
		v = v[:sp]
	}
	return string(v)
}

// fill names e's ids that have no name from the log's names.
func (n *logNames) fill(e *event.Event) {
	if len(n.users) == 0 && len(n.groups) == 0 {
		return
	}
	name := func(m map[string]string, id string, dst *string) {
		if *dst == "" && id != "" {
			*dst = m[id]
		}
	}
	if u := e.User; u != nil {
		name(n.users, u.ID, &u.Name)
		for _, x := range []*event.Entity{u.Audit, u.Effective, u.Saved, u.FS, u.Target} {
			if x != nil {
				name(n.users, x.ID, &x.Name)
			}
		}
	}
	if g := e.Group; g != nil {
		name(n.groups, g.ID, &g.Name)
		for _, x := range []*event.Entity{g.Effective, g.Saved, g.FS} {
			if x != nil {
				name(n.groups, x.ID, &x.Name)
			}
		}
	}
	if f := e.File; f != nil {
		name(n.users, f.UID, &f.Owner)
		name(n.groups, f.GID, &f.Group)
	}
}
