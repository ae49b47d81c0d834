// Package serial is the per-boot namespace registry (SPEC 2): it gives every
// namespace auditns sees a serial that is never reused within a boot, keeps
// the serials durable in the state directory, and produces the registry
// records (auditns.namespace/1).
//
// # Serials
//
// One counter per boot for all types. The initial namespaces, those of
// PID 1, are serials 1..8 in type order (ipc=1 ... mnt=8, is_init). If PID 1's
// namespaces cannot be read (some sandboxes hide PID 1 even from root), those
// of kthreadd (PID 2, a kernel thread forked from init_task, so always in the
// initial namespaces) are used, with a log line. Every other namespace gets
// the next serial, from 9, the first time Observe sees it, directly or as the
// owner (NS_GET_USERNS) or parent (NS_GET_PARENT) of one it sees.
//
// # Keys (id_src)
//
// kernel: where NS_GET_ID answers (Linux >= 6.18) a namespace is keyed by its
// 64-bit kernel id, never reused within a boot: exact, also across daemon
// restarts. Observe opens each /proc/<pid>/ns/<type> and asks for the id.
//
// pinned: elsewhere the key is the nsfs (st_dev, st_ino), and the registry
// holds an O_RDONLY|O_CLOEXEC fd on every live namespace it has registered,
// so the kernel cannot hand the inode to another namespace while the serial
// is bound to it. Because of the pin, Observe recognises a known namespace by
// readlink alone. A pinned namespace is retired (gone set, record
// re-emitted, key forgotten, then the fd closed once that is durable) when
// nothing holds it any more; a later namespace with the same inode gets a
// new serial.
//
// heuristic: a pinned entry re-attached after a daemon restart (below).
//
// # Retirement
//
// The registry tracks which observed pids are in which namespaces. When
// Exited removes the last known member of a namespace, a sweep (batched,
// Options.SweepDelay later) looks for anything that still holds it: a task's
// ns/<type> link (processes, then threads), pid_for_children and
// time_for_children, an nsfs bind mount (`ip netns add`) in the mountinfo of
// every live mount namespace, a live registered namespace that names it as
// owner or parent, or a tracked member whose links cannot be read. Only a
// namespace found unheld by two consecutive sweeps, and not observed since
// the first one began, is retired. A full sweep of every live namespace runs
// every Options.FullSweepEvery and also drops pids whose exit was never
// reported. What the sweep cannot see (an nsfs fd open in another process, a
// pidfd keeping a pid namespace) can retire a namespace that is still alive:
// if it is seen again it gets a second serial. That split is the failure mode
// chosen on purpose; the opposite one, two namespaces under one serial, cannot
// happen while the pin is held. With the kernel method the same sweep sets
// gone too, but there it is informational: if the namespace shows up again
// (same kernel id) gone is cleared and the record re-emitted.
//
// # Restart rule (pinned method)
//
// While auditns is down its pins are released, so an inode recorded in the
// registry may belong to another namespace by the time it restarts; the
// inode alone proves nothing. Every pinned entry therefore carries a witness:
// a process (pid and start time, which together name one process instance
// within a boot) that was in the namespace, recorded when the namespace was
// first seen and refreshed at clean shutdown. On reload an entry is
// re-attached only if its witness is still alive (same start time) and still
// in a namespace with the recorded (dev, inode); it is then pinned again and
// marked id_src "heuristic", because the witness could in principle have
// left the namespace, and joined a new one that reused the inode, while
// auditns was down. Every other live pinned entry is retired at start-up
// (gone = the restart time) and its namespace, if it is still alive, gets a
// new serial when next seen. Kernel-keyed entries are re-attached exactly.
//
// # Durability and the on-disk format
//
// The state directory (Options.Dir, config key state_dir, mode 0700) holds:
//
//	lock                    flock'd by the running daemon (0600)
//	registry.log            the current boot's registry (0600)
//	registry-<boot_id>.log  a previous boot's registry, kept read-only (0400)
//	registry.log.corrupt-*  a copy kept when corrupt lines were skipped (0400)
//
// registry.log is append-only, one line per entry:
//
//	<crc32c of JSON, 8 lowercase hex digits> <JSON>\n
//
// where JSON is one of
//
//	{"t":"boot","v":1,"boot_id":"…","host":"…","method":"kernel","at":"…"}  first line
//	{"t":"reserve","upto":N}       serials <= N may have been handed out
//	{"t":"ns","rec":{Record},"w":{"pid":P,"start":S}}  a record, created or changed; last one wins; w = witness, live entries only
//	{"t":"close","next":N}         clean shutdown: the next serial to issue
//
// A new serial is handed out only after its reserve line (one per
// Options.ReserveBlock serials) and its record line are fsync'd (one group
// fsync covers concurrent allocations), and OnRecord is called only for
// durable records. On reload the counter resumes at the close marker's next
// after a clean shutdown, else above the highest reserved block (so after a
// kill -9 some serials are skipped, none reissued). Invalid lines at the end
// (a torn append) are dropped with a log line; invalid lines followed by
// valid ones (corruption) are skipped, a copy of the file is kept and the
// counter gets an extra safety margin of two blocks. Open rewrites the file
// compactly (temporary file, fsync, rename, directory fsync), and so does the
// sweeper when superseded lines dominate. last_seen is written at most every
// Options.LastSeenEvery per record, without fsync. After a failed write or
// fsync no new serial is issued (the kernel may have dropped the pages).
//
// A different boot_id starts a fresh registry at 9 and keeps the previous
// file as registry-<old boot_id>.log. Load and LoadBoot read a registry
// without taking the lock, for `auditns ns`.
//
// Record.Host and the created_by exe come from the host; encoding/json
// replaces invalid UTF-8 in them with U+FFFD in registry.log and in Load's
// records. The event encoder is the one that escapes untrusted bytes (SPEC 3).
package serial
