// Package event defines the objects auditns publishes, auditns.event/2,
// and their JSON encoding.
//
// auditns.event/2 is an Elastic Common Schema document: every field whose
// name ECS defines has ECS's type and allowed values, and what ECS lacks
// lives under the top-level objects "auditns" (auditns's own) and "auditd"
// (the record-level fields Auditbeat publishes there too). Fields lists
// every field the encoder can write; docs/SCHEMA.md, the JSON Schema and the
// index template in docs/schema are generated from it, and tests hold the
// encoder to it.
//
// The Go types are the event as auditns builds it, not the JSON's layout:
// the encoder places each field. It is append-based and written for this
// fixed schema: it is on the hot path of every audit event, so it neither
// reflects nor allocates beyond the caller's buffer. UnmarshalJSON reads
// auditns.event/2 and auditns.event/1 (what tail and replay may find on a
// topic written by an older auditns).
package event

import "time"

// Schema is the value of auditns.schema of every event.
const Schema = "auditns.event/2"

// SchemaV1 is the schema of the events of auditns before ECS conformance
// (a top-level "schema" field); UnmarshalJSON still reads them.
const SchemaV1 = "auditns.event/1"

// ECSVersion is the ECS release the events conform to (ecs.version).
const ECSVersion = "9.4.0"

// Module and Dataset are event.module and event.dataset of every event:
// the data comes from the Linux audit framework, as Auditbeat's auditd
// module's does.
const (
	Module  = "auditd"
	Dataset = "auditd.auditns"
)

// Kinds of event (Meta.Kind).
const (
	KindEvent = "event"
	// KindLoss is a loss event. It is written as ECS's event.kind
	// "pipeline_error" (ECSKindLoss), the kind of a document about what
	// the pipeline failed to deliver; the details are in auditns.loss.
	KindLoss  = "loss"
	KindState = "state"
)

// ECSKindLoss is event.kind of loss events.
const ECSKindLoss = "pipeline_error"

// Event is one audit event: every record of one audit serial, or a message
// auditns writes about itself (Meta.Kind loss or state).
type Event struct {
	// Schema is auditns.schema (SchemaV1 for a decoded version 1 event).
	Schema string
	// Timestamp is @timestamp: when the kernel recorded the event. A zero
	// Timestamp is written as Meta.Created (an event auditns writes about
	// itself happens when it writes it).
	Timestamp time.Time
	Event     Meta
	Host      Host
	Tags      []string
	Message   string
	Process   *Process
	User      *User
	Group     *Group
	// Label is the subject's security label (SELinux context or AppArmor
	// profile, the records' subj), auditns.subject.label.
	Label     string
	Syscall   *Syscall
	NS        *NS
	NSSrc     string
	NSChange  *NSChange
	Container *Container
	File      *File
	Source    *Endpoint
	Dest      *Endpoint
	Loss      *Loss
	Auditd    *Auditd
	// NSInfo is what the namespace registry says about the namespaces in
	// NS. The daemon never sets it; `auditns replay` adds it from the
	// registry topic.
	NSInfo *NSInfos
}

// Meta is the ECS "event" object.
type Meta struct {
	ID       string
	Sequence uint32
	// Created is when auditns read the event (event.created).
	Created  time.Time
	Kind     string
	Category []string
	// Type is ECS's event.type (start, change, ...); the audit record
	// type is Auditd.MessageType.
	Type    []string
	Action  string
	Outcome string
}

// Host identifies the machine and its boot.
type Host struct {
	Name string `json:"name"`
	Boot Boot   `json:"boot"`
	// Kernel is host.os.kernel (uname -r).
	Kernel string `json:"kernel,omitempty"`
}

// Boot is host.boot.
type Boot struct {
	ID string `json:"id"`
}

// Process is the subject process.
type Process struct {
	PID int `json:"pid,omitempty"`
	// VPID is the pid inside the process's own pid namespace.
	VPID int `json:"vpid,omitempty"`
	// EntityID is stable across pid reuse (boot, pid and start time).
	EntityID   string   `json:"entity_id,omitempty"`
	Parent     *Parent  `json:"parent,omitempty"`
	Name       string   `json:"name,omitempty"`
	Executable string   `json:"executable,omitempty"`
	Args       []string `json:"args,omitempty"`
	// ArgsCount is the argc the kernel reported; it differs from len(Args)
	// only when the kernel could not record every argument.
	ArgsCount        int    `json:"args_count,omitempty"`
	WorkingDirectory string `json:"working_directory,omitempty"`
	Title            string `json:"title,omitempty"`
	// TTY is the kernel's name of the controlling terminal (pts0); the
	// encoder writes ECS's process.tty.char_device from it.
	TTY string `json:"tty,omitempty"`
}

// Parent is process.parent.
type Parent struct {
	PID      int    `json:"pid"`
	EntityID string `json:"entity_id,omitempty"`
}

// Entity is an id with its resolved name.
type Entity struct {
	ID   string `json:"id,omitempty"`
	Name string `json:"name,omitempty"`
}

// User is the subject's user ids: the real uid (ID/Name), the login uid
// (Audit), the effective, saved and filesystem uids, and the user an
// event acts on (Target).
type User struct {
	ID        string  `json:"id,omitempty"`
	Name      string  `json:"name,omitempty"`
	Audit     *Entity `json:"audit,omitempty"`
	Effective *Entity `json:"effective,omitempty"`
	Saved     *Entity `json:"saved,omitempty"`
	FS        *Entity `json:"filesystem,omitempty"`
	Target    *Entity `json:"target,omitempty"`
}

// Group is the subject's group ids: the real gid (ID/Name), the
// effective, saved and filesystem gids.
type Group struct {
	ID        string  `json:"id,omitempty"`
	Name      string  `json:"name,omitempty"`
	Effective *Entity `json:"effective,omitempty"`
	Saved     *Entity `json:"saved,omitempty"`
	FS        *Entity `json:"filesystem,omitempty"`
}

// Syscall is the SYSCALL record's call.
type Syscall struct {
	Name string   `json:"name,omitempty"`
	Nr   int      `json:"nr"`
	Arch string   `json:"arch,omitempty"`
	Exit int64    `json:"exit"`
	Args []string `json:"args,omitempty"`
}

// NSRef is one namespace of the subject: its per-boot serial and nsfs inode.
type NSRef struct {
	Serial uint64 `json:"serial"`
	Inum   uint64 `json:"inum"`
	// ID is the kernel's 64-bit namespace id (NS_GET_ID); 0 where the
	// kernel has none.
	ID uint64 `json:"id,omitempty"`
}

// NS holds the subject's namespaces, one per type; a zero NSRef is unknown
// and left out. Field order is the SPEC's type order.
type NS struct {
	IPC    NSRef `json:"ipc,omitzero"`
	UTS    NSRef `json:"uts,omitzero"`
	User   NSRef `json:"user,omitzero"`
	PID    NSRef `json:"pid,omitzero"`
	Cgroup NSRef `json:"cgroup,omitzero"`
	Time   NSRef `json:"time,omitzero"`
	Net    NSRef `json:"net,omitzero"`
	Mnt    NSRef `json:"mnt,omitzero"`
}

// NSTypes are the namespace type names in the SPEC's order.
var NSTypes = [8]string{"ipc", "uts", "user", "pid", "cgroup", "time", "net", "mnt"}

// At returns a pointer to the namespace of type index i (NSTypes order).
func (n *NS) At(i int) *NSRef {
	switch i {
	case 0:
		return &n.IPC
	case 1:
		return &n.UTS
	case 2:
		return &n.User
	case 3:
		return &n.PID
	case 4:
		return &n.Cgroup
	case 5:
		return &n.Time
	case 6:
		return &n.Net
	case 7:
		return &n.Mnt
	}
	return nil
}

// NSInfos is ns_info: one registry annotation per namespace type of NS
// that the registry knows, in the SPEC's type order.
type NSInfos struct {
	IPC    *NSInfo `json:"ipc,omitempty"`
	UTS    *NSInfo `json:"uts,omitempty"`
	User   *NSInfo `json:"user,omitempty"`
	PID    *NSInfo `json:"pid,omitempty"`
	Cgroup *NSInfo `json:"cgroup,omitempty"`
	Time   *NSInfo `json:"time,omitempty"`
	Net    *NSInfo `json:"net,omitempty"`
	Mnt    *NSInfo `json:"mnt,omitempty"`
}

// At returns the slot of type index i (NSTypes order).
func (n *NSInfos) At(i int) **NSInfo {
	switch i {
	case 0:
		return &n.IPC
	case 1:
		return &n.UTS
	case 2:
		return &n.User
	case 3:
		return &n.PID
	case 4:
		return &n.Cgroup
	case 5:
		return &n.Time
	case 6:
		return &n.Net
	case 7:
		return &n.Mnt
	}
	return nil
}

// NSInfo is the latest auditns.namespace/1 registry record of one
// namespace, reduced to what explains it: its global name, who created it
// and when it was seen. A zero time is unknown and left out; Gone is left
// out while the namespace was alive at its latest record.
type NSInfo struct {
	ID        string     `json:"id"` // <boot_id>/<serial>
	Type      string     `json:"type"`
	IsInit    bool       `json:"is_init,omitempty"`
	CreatedBy *NSCreator `json:"created_by,omitempty"`
	FirstSeen time.Time  `json:"first_seen,omitzero"`
	LastSeen  time.Time  `json:"last_seen,omitzero"`
	Gone      time.Time  `json:"gone,omitzero"`
}

// NSCreator is the syscall event that created a namespace.
type NSCreator struct {
	Event string `json:"event,omitempty"`
	Op    string `json:"op,omitempty"`
	PID   int    `json:"pid,omitempty"`
	Exe   string `json:"exe,omitempty"`
}

// NSChange describes a syscall that changes namespaces.
type NSChange struct {
	Op    string   `json:"op"`
	Types []string `json:"types,omitempty"`
	// ChildrenOnly lists types that affect only children created later
	// (CLONE_NEWPID and CLONE_NEWTIME with unshare/setns).
	ChildrenOnly []string `json:"children_only,omitempty"`
}

// Container identifies the container of the subject, from its cgroup path.
type Container struct {
	ID      string `json:"id"`
	Runtime string `json:"runtime,omitempty"`
}

// File is the object file of the event.
type File struct {
	Path   string `json:"path,omitempty"`
	Device string `json:"device,omitempty"`
	Inode  string `json:"inode,omitempty"`
	Mode   string `json:"mode,omitempty"`
	UID    string `json:"uid,omitempty"`
	GID    string `json:"gid,omitempty"`
	Owner  string `json:"owner,omitempty"`
	Group  string `json:"group,omitempty"`
}

// Endpoint is a network peer (source or destination): an IP address and
// port, or a unix socket's path.
type Endpoint struct {
	IP   string `json:"ip,omitempty"`
	Port int    `json:"port,omitempty"`
	Path string `json:"path,omitempty"`
}

// Loss describes what was lost, on events of kind "loss".
type Loss struct {
	// Reason is kernel_lost, sequence_gap, queue_full, spool_full or
	// dead_letter.
	Reason string `json:"reason"`
	Count  uint64 `json:"count"`
	// From and To bound a gap in audit sequence numbers (inclusive).
	From uint32 `json:"from,omitempty"`
	To   uint32 `json:"to,omitempty"`
	// KernelLost is the kernel's lost counter when this was observed.
	KernelLost uint32 `json:"kernel_lost,omitempty"`
}

// Auditd carries the record-level fields ECS has no place for, where
// Auditbeat has them.
type Auditd struct {
	// MessageType is the audit record type of the event's primary record
	// (SYSCALL, USER_LOGIN, ...).
	MessageType string   `json:"message_type,omitempty"`
	Result      string   `json:"result,omitempty"`
	Session     string   `json:"session,omitempty"`
	Summary     *Summary `json:"summary,omitempty"`
	Paths       []Fields `json:"paths,omitempty"`
	Data        Fields   `json:"data,omitempty"`
	// Records are the raw records (event.original, one per line).
	Records  []string `json:"records,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
}

// Summary is aucoalesce's actor/action/object sentence.
type Summary struct {
	Actor  Actor  `json:"actor"`
	Action string `json:"action,omitempty"`
	Object Object `json:"object"`
	How    string `json:"how,omitempty"`
}

// Actor is the subject of the summary.
type Actor struct {
	Primary   string `json:"primary,omitempty"`
	Secondary string `json:"secondary,omitempty"`
}

// Object is the object of the summary.
type Object struct {
	Type      string `json:"type,omitempty"`
	Primary   string `json:"primary,omitempty"`
	Secondary string `json:"secondary,omitempty"`
}

// Fields are the fields of a record, sorted by key. A sorted list of pairs
// keeps the output deterministic and is cheaper to build than a map; it
// encodes as a JSON object.
type Fields []KV

// KV is one field of a record.
type KV struct {
	Key   string
	Value string
}
