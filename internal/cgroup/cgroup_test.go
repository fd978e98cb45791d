package cgroup

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fixtures are the /proc/PID/cgroup files in testdata, by name without
// ".cgroup", and the id that each names ("" for none).
var fixtures = []struct{ name, want string }{
	// Docker: cgroupfs and systemd drivers, cgroup v1, v2 and hybrid.
	{"docker-v1-cgroupfs", "bf4339a9cfb4d0e9800dab873b9906458967b4132f639e6fa6271a2f332fb99f"},
	{"docker-v1-systemd", "39158c67a24d980ff94d86f6d39b8a3896f6a902c22035bda87b67568c385b26"},
	{"docker-hybrid-cgroupfs", "bf4339a9cfb4d0e9800dab873b9906458967b4132f639e6fa6271a2f332fb99f"},
	{"docker-hybrid-systemd", "39158c67a24d980ff94d86f6d39b8a3896f6a902c22035bda87b67568c385b26"},
	{"docker-v2-cgroupfs", "451ea16e9b3b303ae06adee0776d246423e912705bcdf84c6841fac8a2800090"},
	{"docker-v2-systemd", "9e1987cf07ac408dc51d2803c828d32d4efea2ef46e426a60f143a8444b7f5ed"},
	// systemd running inside the container.
	{"docker-v2-systemd-init-scope", "9e1987cf07ac408dc51d2803c828d32d4efea2ef46e426a60f143a8444b7f5ed"},
	// Read from another container's private cgroup namespace.
	{"docker-v2-private-cgroupns", "9e1987cf07ac408dc51d2803c828d32d4efea2ef46e426a60f143a8444b7f5ed"},
	// A zombie whose container's cgroup is gone.
	{"docker-v2-deleted", "9e1987cf07ac408dc51d2803c828d32d4efea2ef46e426a60f143a8444b7f5ed"},
	// Nested: the inner container.
	{"docker-in-docker-v1", "33bf6fbd7cd8379785a21e233d8e09f824e7bab459168a96312c1c882c1d7e1f"},
	{"docker-in-docker-v2", "33bf6fbd7cd8379785a21e233d8e09f824e7bab459168a96312c1c882c1d7e1f"},

	// Kubernetes with containerd (and Docker), every QoS class, both drivers.
	{"k8s-containerd-v1-cgroupfs-burstable", "571031ad0e7dfdb355fb763a1d7302242d79892c24658ea50867668cb25e4531"},
	{"k8s-containerd-v1-cgroupfs-besteffort", "f5ac13205eb456846c38b3846609028a70857df26ef549bc4be872e00376b25c"},
	{"k8s-containerd-v1-cgroupfs-guaranteed", "738f4c86f37cd6383bb812bec08b3981de1554aaffe54b1c455a6a50d775c578"},
	{"k8s-containerd-v2-cgroupfs-besteffort", "ad291145adb67b8a16cb54e58491cf8740a44d4c4cc3a9167f6b1b31e6a20b11"},
	{"k8s-containerd-v2-systemd-burstable", "8f2fa4fc6db8bfcb9d9943b00d25b8b24749b7903619cf2ca626f673d953b6c8"},
	{"k8s-containerd-v2-systemd-besteffort", "8062b492a95ef0acb7bc2110593155ab9af30b6af59b64495ade764772d1ff84"},
	{"k8s-containerd-v2-systemd-guaranteed", "66b8c25f74a22e05431b7159423871cd0a0732ac7714626e3d50bbc6d32a3c81"},
	{"k8s-docker-v1-systemd-burstable", "571031ad0e7dfdb355fb763a1d7302242d79892c24658ea50867668cb25e4531"},

	// CRI-O; its conmon process is outside the container.
	{"crio-v1-cgroupfs-besteffort", "f43bc1d72c698f2c7d0f7d2a82760bb920f40832b9edcc5d0baa138809816001"},
	{"crio-v2-systemd-besteffort", "c9770b8e58eafe21d11bb2a04ae65f463f4e41bd14c3b57040f56ce64109d1f7"},
	{"crio-v2-systemd-container", "b6e12f544eba62b3a25a8952cb59d8be768e0b63614ce89b1f8d142e6070af1d"},
	{"crio-conmon-v1-cgroupfs", ""},
	{"crio-conmon-v2-systemd", ""},

	// Podman, rootful and rootless; its conmon too.
	{"podman-v1", "668044d25b2482b20aa547b01ee58dc09b7ebb676c5e3f71640071aca2e0d399"},
	{"podman-v2", "25f76a05ffcdce773ae95b4e623b0a940c7ae9d6b84ff211c7bf4c78a8f74414"},
	{"podman-v2-container", "4d24ca3baa36d48763662f5db2846ace60f7c374f19ce292faf8a8c785da3b9b"},
	{"podman-v2-rootless", "24ff56bac653640bc536357637d7d203ce272703b6d425d82d4958b84626ac8f"},
	{"podman-conmon-v2", ""},

	// Host processes.
	{"host-v1", ""},
	{"host-hybrid", ""},
	{"host-hybrid-batch", ""}, // 32 hex digits are no container id
	{"host-v2-init", ""},
	{"host-v2-root", ""},
	{"host-v2-service", ""},
	{"host-v2-session", ""},
}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name+".cgroup"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestContainerIDFixtures(t *testing.T) {
	t.Parallel()
	for _, tt := range fixtures {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tt.want, ContainerID(readFixture(t, tt.name))); diff != "" {
				t.Errorf("ContainerID (-want +got):\n%s", diff)
			}
		})
	}
}

// TestFixturesListed keeps every file in testdata under test.
func TestFixturesListed(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join("testdata", "*.cgroup"))
	if err != nil {
		t.Fatal(err)
	}
	listed := make(map[string]bool)
	for _, f := range fixtures {
		listed[f.name] = true
	}
	for _, f := range files {
		if name := strings.TrimSuffix(filepath.Base(f), ".cgroup"); !listed[name] {
			t.Errorf("testdata/%s.cgroup is not in the fixtures table", name)
		}
	}
	if len(files) != len(fixtures) {
		t.Errorf("%d files in testdata, %d fixtures", len(files), len(fixtures))
	}
}

const (
	id1 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	id2 = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
)

func TestContainerID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"empty", "", ""},
		{"no newline at the end", "0::/docker/" + id1, id1},
		{"crlf and trailing blanks", "0::/docker/" + id1 + " \r\n", id1},
		{"v2 line wins over v1", "1:name=systemd:/docker/" + id2 + "\n0::/docker/" + id1 + "\n", id1},
		{"first v1 line that names one", "3:cpu:/\n2:memory:/docker/" + id1 + "\n1:name=systemd:/docker/" + id2 + "\n0::/\n", id1},
		{"v1 line with hierarchy 0 but controllers is not v2", "0:x:/docker/" + id2 + "\n0::/docker/" + id1 + "\n", id1},
		{"colon in the path", "0::/a:b/docker-" + id1 + ".scope", id1},
		{"bare id with .scope", "0::/" + id1 + ".scope", id1},
		{"any runtime name, systemd convention", "0::/system.slice/nerdctl-" + id1 + ".scope", id1},
		{"innermost wins", "0::/docker/" + id2 + "/kubepods/pod1/cri-containerd-" + id1 + ".scope/init.scope", id1},
		{"conmon inside a container is that container's", "0::/docker/" + id2 + "/machine.slice/libpod-conmon-" + id1 + ".scope", id2},
		{"conmon alone", "0::/libpod-conmon-" + id1 + ".scope", ""},
		{"63 digits", "0::/docker/" + id1[1:], ""},
		{"65 digits", "0::/docker/a" + id1, ""},
		{"upper case", "0::/docker/" + strings.ToUpper(id1), ""},
		{"not hex", "0::/docker/" + id1[:63] + "g", ""},
		{"name without a dash", "0::/docker" + id1, ""},
		{"dash alone", "0::/-" + id1, ""},
		{".slice is no container", "0::/machine.slice/libpod-pod-" + id1 + ".slice", ""},
		{"id followed by another suffix", "0::/docker-" + id1 + ".mount", ""},
		{"kubernetes pod slice", "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod8a3f1f0c_3a4d_4b1e_9c57_2f6e0d9b7a11.slice", ""},
		{"no colons", "/docker/" + id1, ""},
		{"one colon", "0:/docker/" + id1, ""},
		{"only slashes", "0::////", ""},
		{"relative, parent components", "0::/../../" + id1, id1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tt.want, ContainerID([]byte(tt.in))); diff != "" {
				t.Errorf("ContainerID(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestIsID(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]bool{id1: true, id2: true, "": false, id1[1:]: false, strings.ToUpper(id1): false, id1 + "0": false} {
		if got := IsID(s); got != want {
			t.Errorf("IsID(%q) = %v, want %v", s, got, want)
		}
	}
}

// FuzzContainerID checks that any input gives an id of the right shape,
// taken from the input, or nothing, and never panics.
func FuzzContainerID(f *testing.F) {
	for _, tt := range fixtures {
		f.Add(readFixture(f, tt.name))
	}
	if b, err := os.ReadFile("/proc/self/cgroup"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("0::/docker/" + id1 + "/libpod-conmon-" + id2 + ".scope (deleted)\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		id := ContainerID(b)
		if id == "" {
			return
		}
		if !IsID(id) {
			t.Fatalf("ContainerID(%q) = %q: not 64 lower-case hex digits", b, id)
		}
		if !strings.Contains(string(b), id) {
			t.Fatalf("ContainerID(%q) = %q: not in the input", b, id)
		}
	})
}

func BenchmarkContainerID(b *testing.B) {
	for _, name := range []string{"docker-v1-cgroupfs", "k8s-containerd-v2-systemd-burstable", "host-v1", "host-v2-session"} {
		data := readFixture(b, name)
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ContainerID(data)
			}
		})
	}
}
