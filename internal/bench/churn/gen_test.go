package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestGenerate runs a small churn on loopback: every connection is
// logged once, with its own client port, and every server end saw the
// reset.
func TestGenerate(t *testing.T) {
	log := filepath.Join(t.TempDir(), "truth")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sum, err := generate(ctx, config{
		rate: 500, duration: 100 * time.Millisecond, lifetime: 5 * time.Millisecond,
		listen: "127.0.0.4:0", client: "127.0.0.4", ports: "31000-31999", log: log, inflight: 100,
	})
	if err != nil {
		t.Fatal(err)
	}
	if sum.planned != 50 || sum.opened+sum.failed != 50 || sum.failed > 0 {
		t.Errorf("planned %d, opened %d, failed %d; want 50 opened", sum.planned, sum.opened, sum.failed)
	}
	if sum.resets != int64(sum.opened) {
		t.Errorf("%d server ends saw the reset, want %d (%d orderly, %d errors)", sum.resets, sum.opened, sum.orderly, sum.srvErrors)
	}
	f, err := os.Open(log)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	truth, err := parseTruth(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(truth) != sum.opened {
		t.Fatalf("truth log has %d lines, want %d", len(truth), sum.opened)
	}
	if r := newScorer(truth).result(); r.DupTruth != 0 {
		t.Errorf("%d connections share a 4-tuple", r.DupTruth)
	}
	for _, c := range truth {
		if c.Client.Addr().String() != "127.0.0.4" || c.Client.Port() < 31000 || c.Client.Port() > 31999 {
			t.Errorf("client %s outside 127.0.0.4:31000-31999", c.Client)
		}
		if life := c.Closed.Sub(c.Opened); life < 5*time.Millisecond || life > time.Second {
			t.Errorf("%s lived %v, want about 5ms", c.Client, life)
		}
	}
}

func TestRunErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no log", []string{}, "-log is required"},
		{"not loopback", []string{"-log", "x", "-listen", "192.0.2.1:0"}, "not a loopback address"},
		{"client not loopback", []string{"-log", "x", "-client", "192.0.2.1"}, "not a loopback address"},
		{"too few ports", []string{"-log", "x", "-ports", "20000-20009"}, "need as many client ports"},
		{"bad ports", []string{"-log", "x", "-ports", "9-1"}, "want LOW-HIGH"},
		{"score without files", []string{"-score", "truth"}, "-score needs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), tt.args, &stdout, &stderr)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("run(%q) = %v, want an error with %q", tt.args, err, tt.want)
			}
		})
	}
}
