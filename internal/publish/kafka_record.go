package publish

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// The Kafka sink stores every Message in the spool as one record with this
// framing (the spool adds its own length and CRC around it):
//
//	version   1 byte   kafkaRecordV1
//	topic     1 byte   the Topic value, not the topic name: a record spooled
//	                   before a rename of kafka.topic goes to the new name
//	time      8 bytes  Message.Time as Unix nanoseconds, big endian; 0 = zero
//	key       uvarint len(Key)+1 (0 = nil key, 1 = empty key), then the bytes
//	id        uvarint length, bytes
//	schema    uvarint length, bytes
//	boot_id   uvarint length, bytes
//	value     the rest of the record: the JSON object, unchanged
//
// The value is not re-encoded or escaped, so a record costs its value plus
// a few dozen bytes.
const kafkaRecordV1 = 1

// kafkaRecordHeader is the fixed part: version, topic, time.
const kafkaRecordHeader = 1 + 1 + 8

// errBadRecord is wrapped by every decoding failure.
var errBadRecord = errors.New("bad spool record")

// kafkaRecordSize is the exact encoded size of m.
func kafkaRecordSize(m *Message) int {
	n := kafkaRecordHeader
	if m.Key == nil {
		n += uvarintLen(0)
	} else {
		n += uvarintLen(uint64(len(m.Key))+1) + len(m.Key)
	}
	n += uvarintLen(uint64(len(m.ID))) + len(m.ID)
	n += uvarintLen(uint64(len(m.Schema))) + len(m.Schema)
	n += uvarintLen(uint64(len(m.BootID))) + len(m.BootID)
	return n + len(m.Value)
}

// appendKafkaRecord appends the spool record of m to b.
func appendKafkaRecord(b []byte, m *Message) []byte {
	var ns int64
	if !m.Time.IsZero() {
		ns = m.Time.UnixNano()
	}
	b = append(b, kafkaRecordV1, byte(m.Topic))
	b = binary.BigEndian.AppendUint64(b, uint64(ns))
	if m.Key == nil {
		b = binary.AppendUvarint(b, 0)
	} else {
		b = binary.AppendUvarint(b, uint64(len(m.Key))+1)
		b = append(b, m.Key...)
	}
	b = binary.AppendUvarint(b, uint64(len(m.ID)))
	b = append(b, m.ID...)
	b = binary.AppendUvarint(b, uint64(len(m.Schema)))
	b = append(b, m.Schema...)
	b = binary.AppendUvarint(b, uint64(len(m.BootID)))
	b = append(b, m.BootID...)
	return append(b, m.Value...)
}

// kafkaRecordView is a parsed spool record whose byte fields alias the
// record's data.
type kafkaRecordView struct {
	topic                          Topic
	time                           time.Time
	key, id, schema, bootID, value []byte
}

// parseKafkaRecord parses a spool record without copying.
func parseKafkaRecord(data []byte) (kafkaRecordView, error) {
	var v kafkaRecordView
	if len(data) < kafkaRecordHeader {
		return v, fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", errBadRecord, len(data), kafkaRecordHeader)
	}
	if data[0] != kafkaRecordV1 {
		return v, fmt.Errorf("%w: unknown version %d", errBadRecord, data[0])
	}
	v.topic = Topic(data[1])
	if v.topic != TopicEvents && v.topic != TopicNamespaces {
		return v, fmt.Errorf("%w: unknown topic %d", errBadRecord, data[1])
	}
	if ns := int64(binary.BigEndian.Uint64(data[2:10])); ns != 0 {
		v.time = time.Unix(0, ns)
	}
	rest := data[kafkaRecordHeader:]

	n, w := binary.Uvarint(rest)
	if w <= 0 || n > uint64(len(rest)-w)+1 {
		return v, fmt.Errorf("%w: bad key length", errBadRecord)
	}
	rest = rest[w:]
	if n > 0 {
		v.key = rest[: n-1 : n-1]
		rest = rest[n-1:]
	}
	field := func(name string) ([]byte, error) {
		n, w := binary.Uvarint(rest)
		if w <= 0 || n > uint64(len(rest)-w) {
			return nil, fmt.Errorf("%w: bad %s length", errBadRecord, name)
		}
		b := rest[w : w+int(n) : w+int(n)]
		rest = rest[w+int(n):]
		return b, nil
	}
	var err error
	if v.id, err = field("id"); err != nil {
		return v, err
	}
	if v.schema, err = field("schema"); err != nil {
		return v, err
	}
	if v.bootID, err = field("boot_id"); err != nil {
		return v, err
	}
	v.value = rest
	return v, nil
}

// message converts v back to a Message; Key and Value alias the record.
func (v *kafkaRecordView) message() Message {
	return Message{
		Topic:  v.topic,
		Key:    v.key,
		Value:  v.value,
		ID:     string(v.id),
		Schema: string(v.schema),
		BootID: string(v.bootID),
		Time:   v.time,
	}
}

// decodeKafkaRecord parses a spool record into a Message. Key and Value
// alias data.
func decodeKafkaRecord(data []byte) (Message, error) {
	v, err := parseKafkaRecord(data)
	if err != nil {
		return Message{}, err
	}
	return v.message(), nil
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}
