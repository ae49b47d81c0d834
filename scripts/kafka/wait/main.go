// Command wait polls a Kafka broker until it answers a Metadata request that
// lists at least one broker and a controller, or until the timeout expires.
// Unless -groups=false it then also waits until the consumer group
// coordinator answers (FindCoordinator and OffsetFetch for a probe group).
// On a fresh broker that creates __consumer_offsets, so that the first
// consumer group of a test does not meet NOT_COORDINATOR or
// COORDINATOR_NOT_AVAILABLE errors.
//
// It is used by scripts/kafka/start.sh:
//
//	go run ./scripts/kafka/wait -addr 127.0.0.1:19092 -timeout 90s
//
// With -pid PID it gives up as soon as that process (the broker JVM) has
// exited instead of polling a dead port until the timeout.
//
// Exit status 0 means the broker is ready, 1 that it did not become ready in
// time, 2 a usage error, 3 that the process given by -pid exited. Progress goes to stderr; nothing is printed to stdout.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:19092", "broker address host:port")
	timeout := flag.Duration("timeout", 90*time.Second, "give up after this long")
	interval := flag.Duration("interval", 250*time.Millisecond, "delay between attempts")
	pid := flag.Int("pid", 0, "if > 0, fail as soon as this process (the broker) has exited")
	groups := flag.Bool("groups", true, "also wait until the consumer group coordinator answers")
	quiet := flag.Bool("quiet", false, "print nothing, not even the final error")
	minBrokers := flag.Int("brokers", 1, "wait until the metadata lists at least this many brokers (a cluster)")
	flag.Parse()
	if flag.NArg() != 0 {
		fmt.Fprintf(os.Stderr, "wait: unexpected argument %q\n", flag.Arg(0))
		os.Exit(2)
	}
	if _, _, err := net.SplitHostPort(*addr); err != nil {
		fmt.Fprintf(os.Stderr, "wait: -addr: expected host:port, got %q\n", *addr)
		os.Exit(2)
	}

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	start := time.Now()
	var last error
	for {
		n, err := probe(ctx, *addr)
		if err == nil && n < *minBrokers {
			err = fmt.Errorf("metadata lists %d of %d brokers", n, *minBrokers)
		}
		if err == nil && *groups {
			err = probeGroups(ctx, *addr)
		}
		if err == nil {
			if !*quiet {
				fmt.Fprintf(os.Stderr, "wait: %s ready (%d broker(s)) after %s\n",
					*addr, n, time.Since(start).Round(time.Millisecond))
			}
			return
		}
		last = err
		if *pid > 0 && !alive(*pid) {
			if !*quiet {
				fmt.Fprintf(os.Stderr, "wait: broker process %d exited before %s was ready: %v\n", *pid, *addr, last)
			}
			os.Exit(3)
		}
		select {
		case <-ctx.Done():
			if !*quiet {
				fmt.Fprintf(os.Stderr, "wait: %s not ready after %s: %v\n", *addr, *timeout, last)
			}
			os.Exit(1)
		case <-time.After(*interval):
		}
	}
}

// alive reports whether process pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses and may
	// itself contain ") ".
	s := string(b)
	i := strings.LastIndex(s, ") ")
	if i < 0 || i+2 >= len(s) {
		return true
	}
	switch s[i+2] {
	case 'Z', 'X':
		return false
	}
	return true
}

// probe dials addr and asks for cluster metadata. It returns the number of
// brokers listed.
func probe(ctx context.Context, addr string) (int, error) {
	attempt, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()

	d := kafka.Dialer{Timeout: 3 * time.Second, ClientID: "auditns-kafka-wait"}
	conn, err := d.DialContext(attempt, "tcp", addr)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	if dl, ok := attempt.Deadline(); ok {
		if err := conn.SetDeadline(dl); err != nil {
			return 0, err
		}
	}

	brokers, err := conn.Brokers()
	if err != nil {
		return 0, fmt.Errorf("metadata: %w", err)
	}
	if len(brokers) == 0 {
		return 0, errors.New("metadata lists no broker yet")
	}
	ctrl, err := conn.Controller()
	if err != nil {
		return 0, fmt.Errorf("controller: %w", err)
	}
	if ctrl.ID < 0 {
		return 0, errors.New("no active controller yet")
	}
	return len(brokers), nil
}

// probeGroups asks for the coordinator of a probe consumer group and for that
// group's committed offsets. The first FindCoordinator on a fresh broker
// makes it create __consumer_offsets.
func probeGroups(ctx context.Context, addr string) error {
	attempt, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()

	const group = "auditns-kafka-wait"
	c := &kafka.Client{Addr: kafka.TCP(addr), Timeout: 3 * time.Second}
	fc, err := c.FindCoordinator(attempt, &kafka.FindCoordinatorRequest{
		Key:     group,
		KeyType: kafka.CoordinatorKeyTypeConsumer,
	})
	if err != nil {
		return fmt.Errorf("find coordinator: %w", err)
	}
	if fc.Error != nil {
		return fmt.Errorf("find coordinator: %w", fc.Error)
	}
	of, err := c.OffsetFetch(attempt, &kafka.OffsetFetchRequest{GroupID: group})
	if err != nil {
		return fmt.Errorf("offset fetch: %w", err)
	}
	if of.Error != nil {
		return fmt.Errorf("offset fetch: %w", of.Error)
	}
	return nil
}
