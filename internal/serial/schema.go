package serial

// JSONSchema is the JSON Schema (draft 2020-12) of registry records,
// published as docs/schema/auditns.namespace-1.schema.json.
const JSONSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "$id": "urn:auditns:schema:namespace-1",
  "title": "auditns.namespace/1",
  "description": "One namespace of the registry of a host's boot: re-emitted whenever it changes (topic auditns.namespaces, key <boot_id>/<serial>). Every member is always present.",
  "type": "object",
  "properties": {
    "schema": {"const": "auditns.namespace/1"},
    "id": {"description": "The global name, <boot_id>/<serial>.", "type": "string", "pattern": "^.+/[1-9][0-9]*$"},
    "host": {
      "type": "object",
      "properties": {
        "name": {"type": "string"},
        "boot_id": {"type": "string", "minLength": 1}
      },
      "required": ["name", "boot_id"],
      "additionalProperties": false
    },
    "type": {"enum": ["ipc", "uts", "user", "pid", "cgroup", "time", "net", "mnt"]},
    "serial": {"description": "Allocated once per boot (1-8: the initial namespaces in type order), never reused within it.", "type": "integer", "minimum": 1},
    "inum": {"description": "The nsfs inode number.", "type": "integer", "minimum": 0},
    "dev": {"description": "The nsfs device, major:minor.", "type": "string", "pattern": "^[0-9]+:[0-9]+$"},
    "ns_id": {"description": "The kernel's 64-bit namespace id (NS_GET_ID), null where the kernel has none.", "type": ["integer", "null"], "minimum": 0},
    "id_src": {"description": "How the serial is keyed: the kernel's id, an inode held pinned, or an inode alone.", "enum": ["kernel", "pinned", "heuristic"]},
    "is_init": {"type": "boolean"},
    "owner_user": {"$ref": "#/$defs/serialRef", "description": "The user namespace that owns it (NS_GET_USERNS)."},
    "parent": {"$ref": "#/$defs/serialRef", "description": "The parent namespace of a pid or user namespace (NS_GET_PARENT)."},
    "first_seen": {"type": "string", "format": "date-time"},
    "first_event": {"description": "The id of the first event that carried it; null for namespaces seen before any event.", "type": ["string", "null"]},
    "created_by": {
      "description": "The syscall event that created it, null where unknown.",
      "type": ["object", "null"],
      "properties": {
        "event": {"type": "string"},
        "op": {"type": "string"},
        "pid": {"type": "integer"},
        "exe": {"type": "string"}
      },
      "required": ["event", "op", "pid", "exe"],
      "additionalProperties": false
    },
    "last_seen": {"type": "string", "format": "date-time"},
    "gone": {"description": "When its last member was gone; null while it lives.", "type": ["string", "null"], "format": "date-time"}
  },
  "required": ["schema", "id", "host", "type", "serial", "inum", "dev", "ns_id", "id_src", "is_init", "owner_user", "parent",
    "first_seen", "first_event", "created_by", "last_seen", "gone"],
  "additionalProperties": false,
  "$defs": {
    "serialRef": {
      "type": ["object", "null"],
      "properties": {"serial": {"type": "integer", "minimum": 1}},
      "required": ["serial"],
      "additionalProperties": false
    }
  }
}
`
