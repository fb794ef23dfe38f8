package logging

import (
	"log/slog"
	"regexp"
)

// Redacted replaces a secret in a log line; secrets are never logged (design §5).
const Redacted = "[REDACTED]"

// The chassis' patterns (logging.py): keys that name secrets, and credentials inside strings.
var (
	secretKey        = regexp.MustCompile(`(?i)(password|passwd|secret|token|authorization|api[_-]?key|cookie|credential)`)
	urlCredentials   = regexp.MustCompile(`(?i)([a-z][a-z0-9+.-]*://)([^:/@\s]+):[^@/\s]+@`)
	bearer           = regexp.MustCompile(`(?i)\b(bearer|basic)\s+[a-z0-9._~+/=-]+`)
	secretAssignment = regexp.MustCompile(`(?i)\b(password|passwd|pwd|secret|token|api[_-]?key)(\s*[=:]\s*)(['"]?)[^\s'",;&]+`)
)

func redact(key string, value slog.Value) slog.Value {
	if secretKey.MatchString(key) {
		return slog.StringValue(Redacted)
	}
	if value.Kind() == slog.KindString {
		return slog.StringValue(redactString(value.String()))
	}
	return value
}

func redactString(value string) string {
	value = urlCredentials.ReplaceAllString(value, "${1}${2}:"+Redacted+"@")
	value = bearer.ReplaceAllString(value, "${1} "+Redacted)
	return secretAssignment.ReplaceAllString(value, "${1}${2}"+Redacted)
}
