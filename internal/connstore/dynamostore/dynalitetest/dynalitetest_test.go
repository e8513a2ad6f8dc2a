package dynalitetest

import "testing"

func TestStart(t *testing.T) {
	endpoint := Start(t)
	if endpoint == "" {
		t.Fatal("empty endpoint")
	}
}
