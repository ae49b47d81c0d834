package event

// Field is one field the encoder can write: the source of the schema
// document (docs/SCHEMA.md), the JSON Schema and the index template
// (docs/schema), and what the tests hold the encoder and ECS's field table
// to.
type Field struct {
	// Name is the dotted path.
	Name string
	// Type is the Elasticsearch type: keyword, long, date, ip, boolean,
	// or object for an object whose members are free (auditd.data).
	Type string
	// Array: the value is a JSON array of Type.
	Array bool
	// ECS: ECS defines the field; otherwise it is auditns's own (under
	// auditns or auditd).
	ECS bool
	// Required: present whenever its parent object is.
	Required bool
	// Values are the allowed values, where the set is closed.
	Values []string
	// Doc says what the field holds.
	Doc string
}

// ECS's allowed values that auditns writes.
var (
	ecsKinds    = []string{KindEvent, KindState, ECSKindLoss}
	ecsOutcomes = []string{"success", "failure", "unknown"}
	// ECS's event categories and types: go-libaudit's normalizations
	// write only these (the conformance test holds them to ECS's table).
	ecsCategories = []string{"api", "authentication", "configuration", "database", "driver", "email", "file", "host", "iam",
		"intrusion_detection", "library", "malware", "network", "package", "process", "registry", "session", "threat",
		"vulnerability", "web"}
	ecsTypes = []string{"access", "admin", "allowed", "change", "connection", "creation", "deletion", "denied", "device",
		"end", "error", "group", "indicator", "info", "installation", "protocol", "start", "user"}
)

// NSSources are the values of auditns.ns_src: where an event's namespaces
// came from.
var NSSources = []string{"kernel", "observed", "cached", "inherited", "unknown"}

// EventFields is every field of auditns.event/2, in the encoder's order.
// It is one table, a line per field, however long: read top to bottom it
// is the schema, in the order the encoder writes it and the schema test
// checks it; split into functions it would be read in pieces.
var EventFields = func() []Field {
	f := []Field{
		{Name: "@timestamp", Type: "date", ECS: true, Required: true, Doc: "When the kernel recorded the event (the records' audit(SECONDS.MILLIS:SEQ) time); for an event auditns writes about itself, when it wrote it."},
		{Name: "ecs.version", Type: "keyword", ECS: true, Required: true, Doc: "The ECS release the event conforms to: " + ECSVersion + "."},
		{Name: "agent.name", Type: "keyword", ECS: true, Required: true, Doc: `"auditns".`},
		{Name: "agent.type", Type: "keyword", ECS: true, Required: true, Doc: `"auditns".`},
		{Name: "agent.version", Type: "keyword", ECS: true, Doc: "The version of auditns that wrote the event."},
		{Name: "agent.id", Type: "keyword", ECS: true, Doc: "A UUID of the installation, the same across restarts and reboots: derived (SHA-256) from /etc/machine-id, or from the host name where there is none."},
		{Name: "event.id", Type: "keyword", ECS: true, Required: true, Doc: "`<boot_id>:<audit sequence>`: unique and deterministic, the key for de-duplication downstream (events auditns writes about itself have their own ids under the boot id)."},
		{Name: "event.sequence", Type: "long", ECS: true, Required: true, Doc: "The audit sequence number (0 on events auditns writes about itself)."},
		{Name: "event.created", Type: "date", ECS: true, Doc: "When auditns read the event (for `auditns convert`, when it converted it)."},
		{Name: "event.kind", Type: "keyword", ECS: true, Required: true, Values: ecsKinds, Doc: "`event` for audit events; `state` for what auditns says about itself (started, stopped, Kafka delivery failing or resumed); `pipeline_error` for a loss event (what was lost is in auditns.loss)."},
		{Name: "event.category", Type: "keyword", ECS: true, Array: true, Values: ecsCategories, Doc: "ECS categories, from go-libaudit's normalization of the record type and of the syscall (as Auditbeat's)."},
		{Name: "event.type", Type: "keyword", ECS: true, Array: true, Values: ecsTypes, Doc: "ECS event types (start, change, ...), from the same normalization. The audit record type is auditd.message_type."},
		{Name: "event.action", Type: "keyword", ECS: true, Doc: "What happened, in go-libaudit's words (executed, opened-file, changed-identity-of, ...); the loss reason on loss events; what happened on state events (started, stopped, ...)."},
		{Name: "event.outcome", Type: "keyword", ECS: true, Values: ecsOutcomes, Doc: "success, failure or unknown."},
		{Name: "event.module", Type: "keyword", ECS: true, Required: true, Doc: `"` + Module + `": the data comes from the Linux audit framework.`},
		{Name: "event.dataset", Type: "keyword", ECS: true, Required: true, Doc: `"` + Dataset + `".`},
		{Name: "event.original", Type: "keyword", ECS: true, Doc: "The raw records of the event, one per line as `type=NAME msg=audit(...): ...` (with output.raw, and whenever parsing warned)."},
		{Name: "host.name", Type: "keyword", ECS: true, Required: true, Doc: "The host's name (config host_name, default the hostname)."},
		{Name: "host.boot.id", Type: "keyword", ECS: true, Required: true, Doc: "/proc/sys/kernel/random/boot_id: qualifies event ids and namespace serials."},
		{Name: "host.os.type", Type: "keyword", ECS: true, Required: true, Doc: `"linux".`},
		{Name: "host.os.kernel", Type: "keyword", ECS: true, Doc: "The kernel release (uname -r)."},
		{Name: "tags", Type: "keyword", ECS: true, Array: true, Doc: "The audit rule keys (key=) that matched."},
		{Name: "message", Type: "match_only_text", ECS: true, Doc: "The text of a user-space record (msg='...'), or what an event auditns writes about itself says."},

		{Name: "process.pid", Type: "long", ECS: true, Doc: "The subject's pid in the initial pid namespace (the record's pid)."},
		{Name: "process.vpid", Type: "long", ECS: true, Doc: "The subject's pid in its own pid namespace."},
		{Name: "process.entity_id", Type: "keyword", ECS: true, Doc: "Identifies the process across pid reuse: from the boot id, pid and start time."},
		{Name: "process.parent.pid", Type: "long", ECS: true, Required: true, Doc: "The parent's pid (ppid)."},
		{Name: "process.parent.entity_id", Type: "keyword", ECS: true, Doc: "The parent's entity_id."},
		{Name: "process.name", Type: "keyword", ECS: true, Doc: "comm."},
		{Name: "process.executable", Type: "keyword", ECS: true, Doc: "exe."},
		{Name: "process.args", Type: "keyword", ECS: true, Array: true, Doc: "The arguments of an exec (EXECVE records), whole however the kernel split them."},
		{Name: "process.args_count", Type: "long", ECS: true, Doc: "argc as the kernel reported it; more than the args present when the kernel could not log them all."},
		{Name: "process.working_directory", Type: "keyword", ECS: true, Doc: "cwd (CWD record)."},
		{Name: "process.title", Type: "keyword", ECS: true, Doc: "The PROCTITLE record, its NULs as spaces."},
		{Name: "process.tty.char_device.major", Type: "long", ECS: true, Required: true, Doc: "The controlling terminal's device major (136-143 for pts, 4 for tty and ttyS, 5 for tty and console); the kernel's name of it is auditd.data.tty."},
		{Name: "process.tty.char_device.minor", Type: "long", ECS: true, Required: true, Doc: "The terminal's device minor."},
	}
	ids := []struct{ name, doc string }{
		{"process.user", "The effective user (euid)"},
		{"process.real_user", "The real user (uid)"},
		{"process.saved_user", "The saved user (suid)"},
		{"process.group", "The effective group (egid)"},
		{"process.real_group", "The real group (gid)"},
		{"process.saved_group", "The saved group (sgid)"},
		{"user", "The real user (uid), as Auditbeat and most detection rules read it"},
		{"user.effective", "The effective user (euid)"},
		{"user.target", "The user the event acts on (go-libaudit's ECS mapping: the new user of a login, the account a useradd creates, ...)"},
		{"user.group", "The real group (gid)"},
	}
	for _, x := range ids {
		f = append(f,
			Field{Name: x.name + ".id", Type: "keyword", ECS: true, Doc: x.doc + ": its number (4294967295: unset)."},
			Field{Name: x.name + ".name", Type: "keyword", ECS: true, Doc: x.doc + ": its name, where the host resolves it."})
	}
	f = append(f,
		Field{Name: "container.id", Type: "keyword", ECS: true, Required: true, Doc: "The container the subject runs in, from its cgroup path."},
		Field{Name: "container.runtime", Type: "keyword", ECS: true, Doc: "docker, containerd, cri-o, podman, ... as the cgroup path names it."},
		Field{Name: "file.path", Type: "keyword", ECS: true, Doc: "The object file's path (PATH record name)."},
		Field{Name: "file.device", Type: "keyword", ECS: true, Doc: "Its device (rdev)."},
		Field{Name: "file.inode", Type: "keyword", ECS: true, Doc: "Its inode."},
		Field{Name: "file.mode", Type: "keyword", ECS: true, Doc: "Its permission bits, octal (0644)."},
		Field{Name: "file.uid", Type: "keyword", ECS: true, Doc: "Its owner's uid (ouid)."},
		Field{Name: "file.gid", Type: "keyword", ECS: true, Doc: "Its group's gid (ogid)."},
		Field{Name: "file.owner", Type: "keyword", ECS: true, Doc: "Its owner's name."},
		Field{Name: "file.group", Type: "keyword", ECS: true, Doc: "Its group's name."},
	)
	for _, ep := range []string{"source", "destination"} {
		who := "the peer a connect, sendto or sendmsg addressed"
		if ep == "source" {
			who = "the peer an accept, recvfrom or recvmsg got, or the remote address of a user-space login record"
		}
		f = append(f,
			Field{Name: ep + ".address", Type: "keyword", ECS: true, Doc: "The address of " + who + " as the record has it: an IP address, a unix socket's path, or what a user-space record wrote (a host name, ?)."},
			Field{Name: ep + ".ip", Type: "ip", ECS: true, Doc: "The same address when it is an IP address."},
			Field{Name: ep + ".port", Type: "long", ECS: true, Doc: "Its port."},
		)
	}
	f = append(f,
		Field{Name: "auditd.message_type", Type: "keyword", Doc: "The audit record type of the event's primary record (SYSCALL, USER_LOGIN, ...; UNKNOWN[1234] for a type go-libaudit does not name), as Auditbeat has it."},
		Field{Name: "auditd.result", Type: "keyword", Values: []string{"success", "fail", "unknown"}, Doc: "The record's result (success=, res=)."},
		Field{Name: "auditd.session", Type: "keyword", Doc: "The audit session id (ses; 4294967295: unset)."},
		Field{Name: "auditd.summary.actor.primary", Type: "keyword", Doc: "go-libaudit's summary: who (the login user, by name where resolved)."},
		Field{Name: "auditd.summary.actor.secondary", Type: "keyword", Doc: "The acting user."},
		Field{Name: "auditd.summary.action", Type: "keyword", Doc: "What was done (as event.action)."},
		Field{Name: "auditd.summary.object.type", Type: "keyword", Doc: "What it was done to: file, socket, user-session, ..."},
		Field{Name: "auditd.summary.object.primary", Type: "keyword", Doc: "The object."},
		Field{Name: "auditd.summary.object.secondary", Type: "keyword", Doc: "More of the object (a port, a host)."},
		Field{Name: "auditd.summary.how", Type: "keyword", Doc: "How: the executable or terminal."},
		Field{Name: "auditd.paths", Type: "object", Array: true, Doc: "The PATH records, each an object of its fields (name, inode, dev, mode, ouid, ogid, nametype, ...) as strings."},
		Field{Name: "auditd.data", Type: "object", Doc: "Every other field of the records, as strings, by key (a0-a3 of syscalls ECS has no place for are in auditns.syscall). Keys are the kernel's and user space's (tty, op, acct, old-auid, ...)."},
		Field{Name: "auditd.warnings", Type: "keyword", Array: true, Doc: "What go-libaudit's rules could not do with the records (the raw records are then in event.original)."},

		Field{Name: "auditns.schema", Type: "keyword", Required: true, Values: []string{Schema}, Doc: "`" + Schema + "`."},
	)
	for _, t := range NSTypes {
		p := "auditns.ns." + t
		f = append(f,
			Field{Name: p + ".serial", Type: "long", Required: true, Doc: "The subject's " + t + " namespace: its serial, allocated once per boot, never reused within it (0: not known)."},
			Field{Name: p + ".inum", Type: "long", Required: true, Doc: "Its nsfs inode number (0: not known)."},
			Field{Name: p + ".id", Type: "long", Doc: "The kernel's 64-bit id of it (NS_GET_ID, Linux 6.18 and later)."},
			Field{Name: p + ".name", Type: "keyword", Doc: "Its global name, `<boot_id>/<serial>`: the key of its registry record."},
		)
	}
	f = append(f,
		Field{Name: "auditns.ns_src", Type: "keyword", Values: NSSources, Doc: "Where the namespaces came from: kernel (captured in the kernel when the record was written), observed (/proc, while the process lived), cached, inherited (the parent's), unknown (none: not known, or converted from a log)."},
		Field{Name: "auditns.ns_change.op", Type: "keyword", Required: true, Values: []string{"unshare", "setns", "clone"}, Doc: "The syscall that changed (or may have changed) the subject's namespaces."},
		Field{Name: "auditns.ns_change.types", Type: "keyword", Array: true, Values: NSTypes[:], Doc: "The namespace types it changed."},
		Field{Name: "auditns.ns_change.children_only", Type: "keyword", Array: true, Values: NSTypes[:], Doc: "Types that affect only children created later (pid and time with unshare and setns)."},
		Field{Name: "auditns.syscall.name", Type: "keyword", Doc: "The syscall's name."},
		Field{Name: "auditns.syscall.nr", Type: "long", Required: true, Doc: "Its number on its arch."},
		Field{Name: "auditns.syscall.arch", Type: "keyword", Doc: "Its arch (x86_64, aarch64, ...)."},
		Field{Name: "auditns.syscall.exit", Type: "long", Required: true, Doc: "Its return value (-errno on failure)."},
		Field{Name: "auditns.syscall.args", Type: "keyword", Array: true, Doc: "a0-a3 in hex (0x...)."},
		Field{Name: "auditns.user.audit.id", Type: "keyword", Doc: "The login user (auid; 4294967295: unset): ECS has no field for it."},
		Field{Name: "auditns.user.audit.name", Type: "keyword", Doc: "Its name."},
		Field{Name: "auditns.user.filesystem.id", Type: "keyword", Doc: "The filesystem user (fsuid)."},
		Field{Name: "auditns.user.filesystem.name", Type: "keyword", Doc: "Its name."},
		Field{Name: "auditns.group.filesystem.id", Type: "keyword", Doc: "The filesystem group (fsgid)."},
		Field{Name: "auditns.group.filesystem.name", Type: "keyword", Doc: "Its name."},
		Field{Name: "auditns.subject.label", Type: "keyword", Doc: "The subject's security label (subj): an SELinux context (user:role:type:level) or an AppArmor profile."},
		Field{Name: "auditns.loss.reason", Type: "keyword", Required: true, Doc: "What was lost (on loss events): kernel_lost, sequence_gap, queue_full, spool_full, ..."},
		Field{Name: "auditns.loss.count", Type: "long", Required: true, Doc: "How many events."},
		Field{Name: "auditns.loss.from", Type: "long", Doc: "The first audit sequence number of a gap."},
		Field{Name: "auditns.loss.to", Type: "long", Doc: "The last one (inclusive)."},
		Field{Name: "auditns.loss.kernel_lost", Type: "long", Doc: "The kernel's lost counter when the loss was seen."},
	)
	for _, t := range NSTypes {
		p := "auditns.ns_info." + t
		f = append(f,
			Field{Name: p + ".id", Type: "keyword", Required: true, Doc: "Added by `auditns replay` from the registry: the " + t + " namespace's global name."},
			Field{Name: p + ".type", Type: "keyword", Required: true, Values: []string{t}, Doc: "Its type."},
			Field{Name: p + ".is_init", Type: "boolean", Doc: "Whether it is one of the host's initial namespaces."},
			Field{Name: p + ".created_by.event", Type: "keyword", Doc: "The event id of the syscall that created it."},
			Field{Name: p + ".created_by.op", Type: "keyword", Doc: "That syscall (unshare, setns, clone)."},
			Field{Name: p + ".created_by.pid", Type: "long", Doc: "Its process."},
			Field{Name: p + ".created_by.exe", Type: "keyword", Doc: "Its executable."},
			Field{Name: p + ".first_seen", Type: "date", Doc: "When auditns first saw it."},
			Field{Name: p + ".last_seen", Type: "date", Doc: "When last."},
			Field{Name: p + ".gone", Type: "date", Doc: "When its last member was gone."},
		)
	}
	return f
}()
