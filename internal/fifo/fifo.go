// Package fifo is a first-in first-out queue on a reused slice: the spool's
// and the Kafka forwarder's queues are pushed and popped for every record,
// and a slice that is only appended to and resliced would grow without end.
package fifo

// Queue is a FIFO of T. The zero value is an empty queue.
type Queue[T any] struct {
	buf  []T
	head int
}

// Len is the number of items queued.
func (q *Queue[T]) Len() int { return len(q.buf) - q.head }

// At is the i-th item from the front.
func (q *Queue[T]) At(i int) *T { return &q.buf[q.head+i] }

// Front is the oldest item; the queue must not be empty.
func (q *Queue[T]) Front() *T { return &q.buf[q.head] }

// Back is the newest item; the queue must not be empty.
func (q *Queue[T]) Back() *T { return &q.buf[len(q.buf)-1] }

// Reset empties the queue, keeping its storage.
func (q *Queue[T]) Reset() { q.buf, q.head = q.buf[:0], 0 }

// Items is the queued items, oldest first; it aliases the queue.
func (q *Queue[T]) Items() []T { return q.buf[q.head:] }

// PushBack queues v.
func (q *Queue[T]) PushBack(v T) { q.compact(); q.buf = append(q.buf, v) }

// PopFront drops the oldest item.
func (q *Queue[T]) PopFront() {
	var zero T
	q.buf[q.head] = zero // no reference kept to what was popped
	q.head++
	if q.head == len(q.buf) {
		q.Reset()
	}
}

// compact moves the items to the start of the storage when it is full, so
// that a queue whose length stays bounded does not reallocate.
func (q *Queue[T]) compact() {
	if q.head > 0 && len(q.buf) == cap(q.buf) {
		n := copy(q.buf, q.buf[q.head:])
		clear(q.buf[n:])
		q.buf, q.head = q.buf[:n], 0
	}
}
