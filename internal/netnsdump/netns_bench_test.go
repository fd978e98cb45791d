package netnsdump

import "testing"

// BenchmarkFindNamespaces lists the host's network namespaces, as every
// dump with --all-netns does first.
func BenchmarkFindNamespaces(b *testing.B) {
	var n int
	for b.Loop() {
		found, _, err := findNamespaces("/proc", PinDirs)
		if err != nil {
			b.Fatal(err)
		}
		n = len(found)
	}
	b.ReportMetric(float64(n), "namespaces")
}
