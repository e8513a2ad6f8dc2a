// Package testbin finds the local protocol servers that tests run (goaws,
// dynalite, the Lambda Runtime Interface Emulator). `make test-deps`
// installs them into tools/bin; a test run outside make finds them there
// too, or on PATH, or at the path an environment variable names.
//
// Without the binary a test is skipped on a developer's machine and fails
// when the CI environment variable is set, so that CI never passes by
// skipping.
package testbin

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Find returns the path of the executable name: $envVar if set, else name
// on PATH, else tools/bin/name in the module root.
func Find(t testing.TB, name, envVar string) string {
	t.Helper()
	p, err := lookup(name, envVar)
	if err != nil {
		missing(t, name+" not found ("+err.Error()+"); install it with: make test-deps")
	}
	return p
}

// missing skips the test, or fails it under CI.
func missing(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// FindPostgres returns the path of one of PostgreSQL's server programs
// (initdb, pg_ctl), which distributions keep off PATH: $POSTGRES_BINDIR/name
// if that is set, else name on PATH, else in the directory pg_config
// names, else in the newest /usr/lib/postgresql/*/bin.
func FindPostgres(t testing.TB, name string) string {
	t.Helper()
	p, err := lookupPostgres(name)
	if err != nil {
		missing(t, name+" not found ("+err.Error()+"); install PostgreSQL's server package or set POSTGRES_BINDIR")
	}
	return p
}

func lookupPostgres(name string) (string, error) {
	var dirs []string
	if d := os.Getenv("POSTGRES_BINDIR"); d != "" {
		dirs = append(dirs, d)
	} else {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
		if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
			dirs = append(dirs, strings.TrimSpace(string(out)))
		}
		installed, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
		// Newest first; the glob sorts "9" after "16", so compare numerically.
		slices.SortFunc(installed, func(a, b string) int { return versionOf(b) - versionOf(a) })
		dirs = append(dirs, installed...)
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", errors.New("not in POSTGRES_BINDIR, on PATH, in pg_config --bindir or under /usr/lib/postgresql")
}

// versionOf reads the major version from /usr/lib/postgresql/NN/bin.
func versionOf(dir string) int {
	n := 0
	for _, c := range filepath.Base(filepath.Dir(dir)) {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int(c-'0')
	}
	return n
}

func lookup(name, envVar string) (string, error) {
	if envVar != "" {
		if p := os.Getenv(envVar); p != "" {
			if _, err := os.Stat(p); err != nil {
				return "", err
			}
			return p, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	p := filepath.Join(root, "tools", "bin", name)
	if _, err := os.Stat(p); err != nil {
		return "", errors.New("neither on PATH nor in tools/bin")
	}
	return p, nil
}

// moduleRoot walks up from the working directory (a test's package
// directory) to the directory holding go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}
