package logging

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
)

// Colours of structlog's console renderer, by level.
var levelColours = map[string]string{
	"debug": "\x1b[32m", "info": "\x1b[32m", "warning": "\x1b[33m",
	"error": "\x1b[31m", "critical": "\x1b[31;1m",
}

const reset = "\x1b[0m"

// writeConsole renders a line for people: "time [level   ] message   key=value ...".
func writeConsole(line *bytes.Buffer, fields []field, colors bool) {
	values := map[string]string{}
	for _, f := range fields[:5] {
		values[f.key] = f.value.String()
	}
	level := values["level"]
	if colors {
		fmt.Fprintf(line, "%s [%s%-9s%s] %-40s", values["timestamp"], levelColours[level], level,
			reset, values["message"])
	} else {
		fmt.Fprintf(line, "%s [%-9s] %-40s", values["timestamp"], level, values["message"])
	}
	for _, f := range fields[3:] {
		if f.key == "message" {
			continue
		}
		var value bytes.Buffer
		writeJSONValue(&value, f.value)
		text := strings.Trim(value.String(), `"`)
		if colors {
			fmt.Fprintf(line, " \x1b[36m%s\x1b[0m=\x1b[35m%s\x1b[0m", f.key, text)
		} else {
			fmt.Fprintf(line, " %s=%s", f.key, text)
		}
	}
}

// UseColors says whether console lines written to stream get ANSI colours, as the chassis'
// use_colors does: never with NO_COLOR set (it wins), always with FORCE_COLOR set, otherwise
// only on a terminal. Empty values count as unset.
func UseColors(stream io.Writer, getenv func(string) string) bool {
	if getenv("NO_COLOR") != "" {
		return false
	}
	if getenv("FORCE_COLOR") != "" {
		return true
	}
	file, ok := stream.(*os.File)
	if !ok {
		return false
	}
	info, err := file.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}
