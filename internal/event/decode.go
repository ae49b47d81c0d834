package event

import (
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// MarshalJSON is AppendJSON, for encoding/json.
func (e *Event) MarshalJSON() ([]byte, error) { return e.AppendJSON(nil), nil }

// ErrNotEvent is returned for a JSON object that is no auditns event.
var ErrNotEvent = errors.New("not an auditns event")

// UnmarshalJSON decodes an auditns.event/2 or auditns.event/1 object;
// another object is ErrNotEvent. Values the encoder derives (ecs, agent,
// event.module, the namespaces' names, the terminal's device) are not
// kept: the event reads as the one it was encoded from.
func (e *Event) UnmarshalJSON(b []byte) error {
	var probe struct {
		Schema  string `json:"schema"`
		Auditns struct {
			Schema string `json:"schema"`
		} `json:"auditns"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return err
	}
	switch {
	case probe.Auditns.Schema == Schema:
		var w wireV2
		if err := json.Unmarshal(b, &w); err != nil {
			return err
		}
		*e = w.event()
	case probe.Schema == SchemaV1:
		var w wireV1
		if err := json.Unmarshal(b, &w); err != nil {
			return err
		}
		*e = w.event()
	default:
		s := probe.Auditns.Schema
		if s == "" {
			s = probe.Schema
		}
		*e = Event{Schema: s}
		return ErrNotEvent
	}
	return nil
}

// wireV2 is auditns.event/2's layout.
type wireV2 struct {
	Timestamp time.Time `json:"@timestamp"`
	Event     struct {
		ID       string    `json:"id"`
		Sequence uint32    `json:"sequence"`
		Created  time.Time `json:"created"`
		Kind     string    `json:"kind"`
		Category []string  `json:"category"`
		Type     []string  `json:"type"`
		Action   string    `json:"action"`
		Outcome  string    `json:"outcome"`
		Original *string   `json:"original"`
	} `json:"event"`
	Host struct {
		Name string `json:"name"`
		Boot Boot   `json:"boot"`
		OS   struct {
			Kernel string `json:"kernel"`
		} `json:"os"`
	} `json:"host"`
	Tags    []string `json:"tags"`
	Message string   `json:"message"`
	Process *struct {
		PID              int      `json:"pid"`
		VPID             int      `json:"vpid"`
		EntityID         string   `json:"entity_id"`
		Parent           *Parent  `json:"parent"`
		Name             string   `json:"name"`
		Executable       string   `json:"executable"`
		Args             []string `json:"args"`
		ArgsCount        int      `json:"args_count"`
		WorkingDirectory string   `json:"working_directory"`
		Title            string   `json:"title"`
		TTY              *struct {
			CharDevice struct {
				Major int `json:"major"`
				Minor int `json:"minor"`
			} `json:"char_device"`
		} `json:"tty"`
		User       *Entity `json:"user"`
		RealUser   *Entity `json:"real_user"`
		SavedUser  *Entity `json:"saved_user"`
		Group      *Entity `json:"group"`
		RealGroup  *Entity `json:"real_group"`
		SavedGroup *Entity `json:"saved_group"`
	} `json:"process"`
	User *struct {
		ID        string  `json:"id"`
		Name      string  `json:"name"`
		Effective *Entity `json:"effective"`
		Target    *Entity `json:"target"`
		Group     *Entity `json:"group"`
	} `json:"user"`
	Container *Container    `json:"container"`
	File      *File         `json:"file"`
	Source    *wireEndpoint `json:"source"`
	Dest      *wireEndpoint `json:"destination"`
	Auditd    *Auditd       `json:"auditd"`
	Auditns   struct {
		Schema   string    `json:"schema"`
		NS       *NS       `json:"ns"`
		NSSrc    string    `json:"ns_src"`
		NSChange *NSChange `json:"ns_change"`
		Syscall  *Syscall  `json:"syscall"`
		User     *struct {
			Audit *Entity `json:"audit"`
			FS    *Entity `json:"filesystem"`
		} `json:"user"`
		Group *struct {
			FS *Entity `json:"filesystem"`
		} `json:"group"`
		Subject struct {
			Label string `json:"label"`
		} `json:"subject"`
		Loss   *Loss    `json:"loss"`
		NSInfo *NSInfos `json:"ns_info"`
	} `json:"auditns"`
}

func (w *wireV2) event() Event {
	e := Event{
		Schema:    w.Auditns.Schema,
		Timestamp: w.Timestamp,
		Event: Meta{ID: w.Event.ID, Sequence: w.Event.Sequence, Created: w.Event.Created, Kind: w.Event.Kind,
			Category: w.Event.Category, Type: w.Event.Type, Action: w.Event.Action, Outcome: w.Event.Outcome},
		Host:      Host{Name: w.Host.Name, Boot: w.Host.Boot, Kernel: w.Host.OS.Kernel},
		Tags:      w.Tags,
		Message:   w.Message,
		Label:     w.Auditns.Subject.Label,
		Syscall:   w.Auditns.Syscall,
		NS:        w.Auditns.NS,
		NSSrc:     w.Auditns.NSSrc,
		NSChange:  w.Auditns.NSChange,
		Container: w.Container,
		File:      w.File,
		Source:    w.Source.endpoint(),
		Dest:      w.Dest.endpoint(),
		Loss:      w.Auditns.Loss,
		Auditd:    w.Auditd,
		NSInfo:    w.Auditns.NSInfo,
	}
	if e.Event.Kind == ECSKindLoss {
		e.Event.Kind = KindLoss
	}
	if e.Timestamp.Equal(e.Event.Created) {
		// Written from Created (see Event.Timestamp).
		e.Timestamp = time.Time{}
	}
	if p := w.Process; p != nil {
		e.Process = &Process{PID: p.PID, VPID: p.VPID, EntityID: p.EntityID, Parent: p.Parent, Name: p.Name,
			Executable: p.Executable, Args: p.Args, ArgsCount: p.ArgsCount, WorkingDirectory: p.WorkingDirectory, Title: p.Title}
		if p.TTY != nil {
			e.Process.TTY = TTYName(p.TTY.CharDevice.Major, p.TTY.CharDevice.Minor)
		}
		if x := e.Process; x.PID == 0 && x.VPID == 0 && x.EntityID == "" && x.Parent == nil && x.Name == "" && x.Executable == "" &&
			x.Args == nil && x.ArgsCount == 0 && x.WorkingDirectory == "" && x.Title == "" && x.TTY == "" {
			// Only the subject's ids were there.
			e.Process = nil
		}
	}
	u, g := &User{}, &Group{}
	if w.User != nil {
		u.ID, u.Name, u.Effective, u.Target = w.User.ID, w.User.Name, w.User.Effective, w.User.Target
		if w.User.Group != nil {
			g.ID, g.Name = w.User.Group.ID, w.User.Group.Name
		}
	}
	if p := w.Process; p != nil {
		if u.Effective == nil {
			u.Effective = p.User
		}
		if p.RealUser != nil && u.ID == "" && u.Name == "" {
			u.ID, u.Name = p.RealUser.ID, p.RealUser.Name
		}
		u.Saved = p.SavedUser
		g.Effective, g.Saved = p.Group, p.SavedGroup
		if p.RealGroup != nil && g.ID == "" && g.Name == "" {
			g.ID, g.Name = p.RealGroup.ID, p.RealGroup.Name
		}
	}
	if x := w.Auditns.User; x != nil {
		u.Audit, u.FS = x.Audit, x.FS
	}
	if x := w.Auditns.Group; x != nil {
		g.FS = x.FS
	}
	if *u != (User{}) {
		e.User = u
	}
	if *g != (Group{}) {
		e.Group = g
	}
	if w.Event.Original != nil {
		if e.Auditd == nil {
			e.Auditd = &Auditd{}
		}
		e.Auditd.Records = strings.Split(*w.Event.Original, "\n")
	}
	return e
}

// wireEndpoint is ECS's source and destination.
type wireEndpoint struct {
	Address string `json:"address"`
	IP      string `json:"ip"`
	Port    int    `json:"port"`
}

// endpoint is w as the encoder's input: an address that is a path (unix
// sockets: a file or an abstract name) is Path, another is IP.
func (w *wireEndpoint) endpoint() *Endpoint {
	if w == nil {
		return nil
	}
	e := &Endpoint{IP: w.IP, Port: w.Port}
	if e.IP == "" {
		if strings.HasPrefix(w.Address, "/") || strings.HasPrefix(w.Address, "@") {
			e.Path = w.Address
		} else {
			e.IP = w.Address
		}
	}
	return e
}

// wireV1 is auditns.event/1's layout.
type wireV1 struct {
	Schema string `json:"schema"`
	Event  struct {
		ID       string    `json:"id"`
		Sequence uint32    `json:"sequence"`
		Created  time.Time `json:"created"`
		Kind     string    `json:"kind"`
		Category []string  `json:"category"`
		Action   string    `json:"action"`
		Outcome  string    `json:"outcome"`
		Type     string    `json:"type"`
	} `json:"event"`
	Host      Host       `json:"host"`
	Tags      []string   `json:"tags"`
	Message   string     `json:"message"`
	Process   *Process   `json:"process"`
	User      *User      `json:"user"`
	Group     *Entity    `json:"group"`
	Syscall   *Syscall   `json:"syscall"`
	NS        *NS        `json:"ns"`
	NSSrc     string     `json:"ns_src"`
	NSChange  *NSChange  `json:"ns_change"`
	Container *Container `json:"container"`
	File      *File      `json:"file"`
	Source    *Endpoint  `json:"source"`
	Dest      *Endpoint  `json:"destination"`
	Loss      *Loss      `json:"loss"`
	Auditd    *Auditd    `json:"auditd"`
	NSInfo    *NSInfos   `json:"ns_info"`
}

// event is w in the Go model: version 1's event.created was the kernel's
// time (Timestamp now), its event.type the record type.
func (w *wireV1) event() Event {
	e := Event{
		Schema:    SchemaV1,
		Timestamp: w.Event.Created,
		Event: Meta{ID: w.Event.ID, Sequence: w.Event.Sequence, Kind: w.Event.Kind,
			Category: w.Event.Category, Action: w.Event.Action, Outcome: w.Event.Outcome},
		Host: w.Host, Tags: w.Tags, Message: w.Message, Process: w.Process, User: w.User,
		Syscall: w.Syscall, NS: w.NS, NSSrc: w.NSSrc, NSChange: w.NSChange, Container: w.Container,
		File: w.File, Source: w.Source, Dest: w.Dest, Loss: w.Loss, Auditd: w.Auditd, NSInfo: w.NSInfo,
	}
	if w.Group != nil {
		e.Group = &Group{ID: w.Group.ID, Name: w.Group.Name}
	}
	if w.Event.Type != "" {
		if e.Auditd == nil {
			e.Auditd = &Auditd{}
		}
		e.Auditd.MessageType = w.Event.Type
	}
	return e
}

// MessageType is the audit record type of e's primary record, "" for an
// event auditns wrote about itself.
func (e *Event) MessageType() string {
	if e.Auditd == nil {
		return ""
	}
	return e.Auditd.MessageType
}

// When returns when e happened: @timestamp, or event.created when it has
// none.
func (e *Event) When() time.Time {
	if !e.Timestamp.IsZero() {
		return e.Timestamp
	}
	return e.Event.Created
}
