package config

import (
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
)

const (
	nesting    = "__"
	fileSuffix = "_FILE"
)

// Sections the gateway reads; only variables under them are configuration, as in config.py.
// The chassis sections the gateway has no use for (database, health, faults, auth, and
// DATABASE_URL) are not among them, so their variables are ignored rather than refused: a
// deployment that sets them for every service (compose sets AUTH__* and FAULTS__* in its common
// block) must still start the gateway.
var sections = map[string]bool{
	"service": true, "environment": true, "http": true, "logging": true,
	"shutdown": true, "storefront": true, "dependencies": true,
}

// A dependency's name becomes a route (/api/<name>/...) and a metric label.
var dependencyName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// Error lists every bad key, one a line, naming the key and the variable that set it.
type Error struct{ Problems []string }

func (e *Error) Error() string {
	return "invalid configuration:\n  " + strings.Join(e.Problems, "\n  ")
}

// The variable that picks a profile, and the one profile the services define (config.py).
const (
	profileVariable   = "ENVIRONMENT"
	productionProfile = "production"
)

// Load builds the settings from the defaults, the production profile when ENVIRONMENT says
// so, and environ (os.Environ's "NAME=value" form); secret files named by *_FILE variables win
// over plain variables.
func Load(environ []string) (*Settings, error) {
	settings := Defaults()
	var problems []string
	plain, files := split(environ)
	if strings.TrimSpace(plain[profileVariable]) == productionProfile {
		settings.ProductionProfile() // the profile, then the variables over it (as config.py)
	}
	for _, name := range sortedKeys(plain) {
		problems = append(problems, settings.apply(name, name, plain[name])...)
	}
	for _, name := range sortedKeys(files) {
		stem := strings.TrimSuffix(name, fileSuffix)
		if keyPath(stem) == nil {
			continue
		}
		content, err := os.ReadFile(files[name])
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s (env %s): cannot read secret file %s: %v",
				strings.Join(keyPath(stem), "."), name, files[name], describeIOError(err)))
			continue
		}
		problems = append(problems, settings.apply(stem, name, strings.TrimSpace(string(content)))...)
	}
	problems = append(problems, settings.validate()...)
	if len(problems) > 0 {
		return nil, &Error{Problems: problems}
	}
	return settings, nil
}

// split separates plain variables from *_FILE ones, by upper-cased name.
func split(environ []string) (plain, files map[string]string) {
	plain, files = map[string]string{}, map[string]string{}
	for _, entry := range environ {
		name, value, found := strings.Cut(entry, "=")
		if !found {
			continue
		}
		name = strings.ToUpper(name)
		if strings.HasSuffix(name, fileSuffix) {
			files[name] = value
		} else {
			plain[name] = value
		}
	}
	return plain, files
}

// keyPath is the settings path a variable names, or nil when it is no gateway setting.
func keyPath(variable string) []string {
	parts := strings.Split(strings.ToLower(variable), nesting)
	for _, part := range parts {
		if part == "" {
			return nil
		}
	}
	if !sections[parts[0]] {
		return nil
	}
	if len(parts) == 1 && parts[0] != "environment" {
		return nil // e.g. SERVICE=books in an image must not replace the service section
	}
	return parts
}

// apply sets the key variable names to raw; source is the variable it came from.
func (s *Settings) apply(variable, source, raw string) []string {
	path := keyPath(variable)
	if path == nil {
		return nil
	}
	key := strings.Join(path, ".")
	fail := func(message string) []string {
		return []string{fmt.Sprintf("%s (env %s): %s", key, source, message)}
	}
	var known map[string]field
	var subkey string
	if path[0] == "dependencies" {
		if len(path) < 3 {
			return fail("expected a section of keys (e.g. " + strings.ToUpper(variable) + "__BASE_URL)")
		}
		name := path[1]
		if !dependencyName.MatchString(name) {
			return fail("a dependency's name is lower-case letters, digits, - and _")
		}
		if path[2] == "token" && len(path) == 3 {
			return fail("not supported by the gateway: it passes the caller's Authorization " +
				"through and never lends a credential of its own")
		}
		dependency := s.Dependencies[name]
		if dependency == nil {
			dependency = DefaultDependency()
			s.Dependencies[name] = dependency
		}
		known, subkey = dependency.fields(), strings.Join(path[2:], ".")
	} else {
		known, subkey = s.fields(), key
	}
	f, ok := known[subkey]
	if !ok {
		return fail("unknown key")
	}
	if !f.set(raw) {
		return fail("expected " + f.expect)
	}
	return nil
}

// validate checks what no single key can: required keys and keys that depend on each other.
func (s *Settings) validate() []string {
	var problems []string
	for _, name := range sortedKeys(s.Dependencies) {
		d := s.Dependencies[name]
		prefix := "dependencies." + name + "."
		variable := func(key string) string {
			return strings.ToUpper(strings.ReplaceAll(prefix+key, ".", nesting))
		}
		if d.BaseURL == "" {
			problems = append(problems, fmt.Sprintf("%sbase_url (env %s): field required",
				prefix, variable("base_url")))
		}
		if d.Breaker.MinimumCalls > d.Breaker.WindowSize {
			problems = append(problems, fmt.Sprintf(
				"%sbreaker.minimum_calls (env %s): must not exceed breaker.window_size",
				prefix, variable("breaker.minimum_calls")))
		}
	}
	return problems
}

func describeIOError(err error) string {
	if pathError, ok := err.(*os.PathError); ok {
		return pathError.Err.Error()
	}
	return err.Error()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for key := range m {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	return keys
}
