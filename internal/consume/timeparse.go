package consume

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseTime parses a --since, --from or --to value relative to now:
//
//	10m, 2h30m, 1.5h   a duration: that long before now
//	now                now
//	2026-11-28T12:00:00Z, 2026-11-28T12:00:00.5+01:00   RFC 3339
//	2026-11-28T12:00:00, 2026-11-28 12:00:00, 2026-11-28   local time
//	@1795000000        Unix seconds
//
// The error says what was expected, without the flag name.
func ParseTime(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "now":
		return now, nil
	case strings.HasPrefix(s, "@"):
		f, err := strconv.ParseFloat(s[1:], 64)
		if err == nil && f >= 0 {
			sec := int64(f)
			return time.Unix(sec, int64((f-float64(sec))*1e9)), nil
		}
	case s == "":
	default:
		if d, err := time.ParseDuration(s); err == nil {
			if d < 0 {
				return time.Time{}, fmt.Errorf("expected a positive duration (how long ago), got %q", s)
			}
			return now.Add(-d), nil
		}
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			return t, nil
		}
		for _, layout := range []string{"2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999", "2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02"} {
			if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
				return t, nil
			}
		}
	}
	return time.Time{}, fmt.Errorf("expected a duration ago (10m, 2h), an RFC 3339 time (2026-11-28T12:00:00Z), a local date and time (2026-11-28 12:00), @UNIX_SECONDS or now; got %q", s)
}
