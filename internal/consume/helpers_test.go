package consume

import (
	"context"
	"strings"
	"testing"

	"github.com/auditns/auditns/internal/testenv/kafkatest"
)

func dial(t *testing.T) (*Client, string) {
	t.Helper()
	// Not while another test stops or restarts the shared broker.
	brokers := kafkatest.Brokers(t)
	var warns []string
	c, err := Dial(context.Background(), Options{Brokers: strings.Split(brokers, ","), Warn: func(s string) { warns = append(warns, s) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, brokers
}
