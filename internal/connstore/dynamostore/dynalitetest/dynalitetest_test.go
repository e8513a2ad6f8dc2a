package dynalitetest

import (
	"os"
	"path/filepath"
	"testing"
)

func TestFindBinUnderModuleRoot(t *testing.T) {
	root := t.TempDir()
	bin := filepath.Join(root, "node_modules", ".bin", "dynalite")
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
	t.Setenv(EnvBin, "")
	t.Setenv("PATH", t.TempDir())
	t.Chdir(pkg)

	got, err := findBin()
	if err != nil {
		t.Fatalf("findBin: %v", err)
	}
	if got != bin {
		t.Errorf("findBin = %s, want %s", got, bin)
	}

	if err := os.Remove(bin); err != nil {
		t.Fatal(err)
	}
	if _, err := findBin(); err == nil {
		t.Error("findBin without any dynalite: want an error")
	}
}

func TestStart(t *testing.T) {
	endpoint := Start(t)
	if endpoint == "" {
		t.Fatal("empty endpoint")
	}
}
