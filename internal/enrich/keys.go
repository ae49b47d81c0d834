package enrich

// kid names the record keys that the enrichment reads or rewrites, so that
// finding them costs an array index rather than a search. Every other key
// is kNone and found by name.
type kid uint8

const (
	kNone kid = iota
	kA0
	kA1
	kA2
	kA3
	kAcct
	kArch
	kArgc
	kAuid
	kCmd
	kComm
	kCwd
	kData
	kEuid
	kExe
	kExit
	kFsuid
	kGid
	kInode
	kItems
	kKey
	kMode
	kMsg
	kName
	kNametype
	kObj
	kOgid
	kOldAuid
	kOuid
	kPid
	kPpid
	kProctitle
	kRdev
	kRes
	kResult
	kSaddr
	kSes
	kSig
	kSubj
	kSuccess
	kSuid
	kSyscall
	kTty
	kUid
	numKids
)

var kidNames = [numKids]string{
	kA0: "a0", kA1: "a1", kA2: "a2", kA3: "a3", kAcct: "acct", kArch: "arch", kArgc: "argc",
	kAuid: "auid", kCmd: "cmd", kComm: "comm", kCwd: "cwd", kData: "data", kEuid: "euid",
	kExe: "exe", kExit: "exit", kFsuid: "fsuid", kGid: "gid", kInode: "inode", kItems: "items",
	kKey: "key", kMode: "mode", kMsg: "msg", kName: "name", kNametype: "nametype", kObj: "obj",
	kOgid: "ogid", kOldAuid: "old-auid", kOuid: "ouid", kPid: "pid", kPpid: "ppid",
	kProctitle: "proctitle", kRdev: "rdev", kRes: "res", kResult: "result", kSaddr: "saddr",
	kSes: "ses", kSig: "sig", kSubj: "subj", kSuccess: "success", kSuid: "suid",
	kSyscall: "syscall", kTty: "tty", kUid: "uid",
}

// kidTable is an open-addressed table of the known keys by kidHash; an
// empty slot ends a probe.
var kidTable = func() (t [256]kid) {
	for k := kid(1); k < numKids; k++ {
		h := kidHash(kidNames[k])
		for t[h] != kNone {
			h++
		}
		t[h] = k
	}
	return t
}()

func kidHash(s string) uint8 {
	return uint8(len(s)*31 + int(s[0])*7 + int(s[len(s)-1])*3 + int(s[len(s)/2]))
}

// classify returns the kid of key, kNone for the others.
func classify(key string) kid {
	if len(key) == 0 {
		return kNone
	}
	for h := kidHash(key); ; h++ {
		k := kidTable[h]
		if k == kNone {
			return kNone
		}
		if kidNames[k] == key {
			return k
		}
	}
}
