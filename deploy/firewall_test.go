package deploy

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// inNetns runs f on a thread switched into the named network namespace:
// sockets f creates belong to it.
func inNetns(t *testing.T, name string, f func() error) error {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return err
	}
	defer self.Close()
	ns, err := os.Open(filepath.Join("/run/netns", name))
	if err != nil {
		return err
	}
	defer ns.Close()
	if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
		return err
	}
	defer func() {
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			panic(fmt.Sprintf("cannot return to the test's network namespace: %v", err))
		}
	}()
	return f()
}

// TestNodeFirewallBlocksRegistryEgress loads the shipped nftables ruleset
// into a network namespace standing for a node, with a "registry" in a
// second namespace: ports 443 and 80 to it are refused, the same ports to
// an address in the pullgate set pass, another port passes, and without the
// ruleset everything passes (the refusal is the ruleset's).
func TestNodeFirewallBlocksRegistryEgress(t *testing.T) {
	for _, tool := range []string{"nft", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("PULLGATE_REQUIRE_TOOLS") != "" {
				t.Fatalf("%s not installed", tool)
			}
			t.Skipf("%s not installed", tool)
		}
	}
	if os.Geteuid() != 0 {
		if os.Getenv("PULLGATE_REQUIRE_TOOLS") != "" {
			t.Fatal("the firewall test needs root (network namespaces)")
		}
		t.Skip("needs root")
	}
	rules, err := os.ReadFile("nodes/firewall/pullgate-egress.nft")
	if err != nil {
		t.Fatal(err)
	}
	id := os.Getpid() % 100000
	node, reg := fmt.Sprintf("pgnode%d", id), fmt.Sprintf("pgreg%d", id)
	nodeIP, regIP := "10.200.7.1", "10.200.7.2"
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// Network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN, which root
	// in an unprivileged container lacks: that is the environment, not a
	// missing tool (the ruleset's syntax is still checked by
	// TestNodeFirewallNFT).
	if out, err := exec.Command("ip", "netns", "add", node).CombinedOutput(); err != nil {
		if strings.Contains(string(out), "Operation not permitted") || strings.Contains(string(out), "Permission denied") {
			t.Skipf("network namespaces not permitted here: %s", strings.TrimSpace(string(out)))
		}
		t.Fatalf("ip netns add %s: %v\n%s", node, err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", node).Run() })
	run("ip", "netns", "add", reg)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", reg).Run() })
	vn, vr := fmt.Sprintf("pgn%d", id), fmt.Sprintf("pgr%d", id)
	run("ip", "link", "add", vn, "netns", node, "type", "veth", "peer", "name", vr, "netns", reg)
	run("ip", "-n", node, "addr", "add", nodeIP+"/24", "dev", vn)
	run("ip", "-n", reg, "addr", "add", regIP+"/24", "dev", vr)
	run("ip", "-n", node, "link", "set", "lo", "up")
	run("ip", "-n", node, "link", "set", vn, "up")
	run("ip", "-n", reg, "link", "set", vr, "up")

	for _, port := range []string{"80", "443", "5000"} {
		err := inNetns(t, reg, func() error {
			l, err := net.Listen("tcp", net.JoinHostPort(regIP, port))
			if err != nil {
				return err
			}
			t.Cleanup(func() { l.Close() })
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					c.Close()
				}
			}()
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	dial := func(port string) error {
		return inNetns(t, node, func() error {
			c, err := net.DialTimeout("tcp", net.JoinHostPort(regIP, port), 5*time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
	}
	load := func(b []byte) {
		t.Helper()
		p := filepath.Join(t.TempDir(), "rules.nft")
		os.WriteFile(p, b, 0o644)
		run("ip", "netns", "exec", node, "nft", "-f", p)
	}

	for _, port := range []string{"80", "443", "5000"} {
		if err := dial(port); err != nil {
			t.Fatalf("without the ruleset, port %s: %v", port, err)
		}
	}
	load(rules)
	for _, port := range []string{"80", "443"} {
		if err := dial(port); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("with the ruleset, port %s to a registry: %v, want connection refused", port, err)
		}
	}
	if err := dial("5000"); err != nil {
		t.Errorf("with the ruleset, port 5000 (not a blocked port): %v", err)
	}
	// The same address as pullgate: allowed (loading again replaces the table).
	load([]byte(strings.Replace(string(rules), "elements = { 10.96.100.50 }", "elements = { "+regIP+" }", 1)))
	for _, port := range []string{"80", "443"} {
		if err := dial(port); err != nil {
			t.Errorf("port %s to pullgate's address: %v", port, err)
		}
	}
}
