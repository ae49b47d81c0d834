package config

import (
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cast"
)

// Setting is one key of the effective configuration and where its value
// came from.
type Setting struct {
	Key    string
	Value  string // as loaded; a secret is masked
	Origin string // "flag --NAME", "env NAME", "file PATH" or "default"
}

// secrets are the keys whose values `auditns config show` never prints.
var secrets = map[string]bool{"kafka.sasl.password": true}

// Masked stands for a secret that is set.
const Masked = "********"

// origin says which layer set key: the same precedence viper applies.
func (l *Loader) origin(key string) string {
	if f := l.flags[key]; f != nil && f.Changed {
		return "flag --" + f.Name
	}
	if _, ok := os.LookupEnv(EnvName(key)); ok {
		return "env " + EnvName(key)
	}
	if key == "output.sink" {
		if _, ok := os.LookupEnv("AUDITNS_OUTPUT"); ok {
			return "env AUDITNS_OUTPUT"
		}
	}
	if l.file != "" && l.v.InConfig(key) {
		return "file " + l.file
	}
	return "default"
}

// Settings returns every key with its value and origin, sorted by key.
// Call it after Load.
func (l *Loader) Settings() []Setting {
	var out []Setting
	for _, k := range Keys() {
		v := l.v.Get(k)
		var s string
		if list, err := cast.ToStringSliceE(v); err == nil && isList(v) {
			s = "[" + strings.Join(list, ", ") + "]"
		} else {
			s = fmt.Sprint(v)
		}
		if secrets[k] && s != "" {
			s = Masked
		}
		out = append(out, Setting{Key: k, Value: s, Origin: l.origin(k)})
	}
	return out
}

func isList(v any) bool {
	switch v.(type) {
	case []string, []any:
		return true
	}
	return false
}

// WriteSettings prints settings as an aligned table: key, value, origin.
// Empty values print as "".
func WriteSettings(w io.Writer, settings []Setting) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tVALUE\tFROM")
	for _, s := range settings {
		v := s.Value
		if v == "" {
			v = `""`
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Key, v, s.Origin)
	}
	return tw.Flush()
}
