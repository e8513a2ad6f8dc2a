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
	"testing"
)

// Find returns the path of the executable name: $envVar if set, else name
// on PATH, else tools/bin/name in the module root.
func Find(t testing.TB, name, envVar string) string {
	t.Helper()
	p, err := lookup(name, envVar)
	if err != nil {
		msg := name + " not found (" + err.Error() + "); install it with: make test-deps"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return p
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
