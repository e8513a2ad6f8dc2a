package testbin

import (
	"os"
	"path/filepath"
	"testing"
)

func TestLookup(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "fake-server")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FAKE_SERVER_BIN", bin)
	if p, err := lookup("fake-server", "FAKE_SERVER_BIN"); err != nil || p != bin {
		t.Fatalf("from the variable: %q, %v", p, err)
	}
	t.Setenv("FAKE_SERVER_BIN", filepath.Join(dir, "missing"))
	if _, err := lookup("fake-server", "FAKE_SERVER_BIN"); err == nil {
		t.Fatal("a variable naming a missing file was accepted")
	}
	t.Setenv("FAKE_SERVER_BIN", "")
	t.Setenv("PATH", dir)
	if p, err := lookup("fake-server", "FAKE_SERVER_BIN"); err != nil || p != bin {
		t.Fatalf("from PATH: %q, %v", p, err)
	}
	if _, err := lookup("no-such-server-anywhere", ""); err == nil {
		t.Fatal("a missing binary was found")
	}
}

func TestLookupUnderModuleRoot(t *testing.T) {
	root := t.TempDir()
	bin := filepath.Join(root, "tools", "bin", "fake-server")
	pkg := filepath.Join(root, "internal", "pkg")
	for _, dir := range []string{filepath.Dir(bin), pkg} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "go.mod"), []byte("module example.test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", t.TempDir())
	t.Chdir(pkg)
	if p, err := lookup("fake-server", ""); err != nil || p != bin {
		t.Fatalf("from tools/bin: %q, %v", p, err)
	}
	if err := os.Remove(bin); err != nil {
		t.Fatal(err)
	}
	if _, err := lookup("fake-server", ""); err == nil {
		t.Fatal("found a removed binary")
	}
}

func TestLookupPostgres(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "initdb")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("POSTGRES_BINDIR", dir)
	if p, err := lookupPostgres("initdb"); err != nil || p != bin {
		t.Fatalf("from POSTGRES_BINDIR: %q, %v", p, err)
	}
	if _, err := lookupPostgres("pg_ctl"); err == nil {
		t.Fatal("a program missing from POSTGRES_BINDIR was found elsewhere")
	}
	if v := versionOf("/usr/lib/postgresql/16/bin"); v != 16 {
		t.Fatalf("versionOf: %d, want 16", v)
	}
}
