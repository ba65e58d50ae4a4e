package vsae2e

import (
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/test/tools"
	"github.com/pullgate/pullgate/verify/vsa"
)

// kyvernoSnippet is the YAML block of docs/vsa.md's Kyverno section that
// declares kind, made concrete: the placeholder key replaced by pem, the
// example image glob by glob. The test runs what the page tells users to
// apply, so the page cannot drift from what works.
func kyvernoSnippet(t *testing.T, kind, pem, glob string) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	doc, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "docs", "vsa.md"))
	if err != nil {
		t.Fatal(err)
	}
	sec := string(doc)
	i := strings.Index(sec, "\n## Kyverno\n")
	if i < 0 {
		t.Fatal("docs/vsa.md has no Kyverno section")
	}
	sec = sec[i+1:]
	if j := strings.Index(sec, "\n## "); j >= 0 {
		sec = sec[:j]
	}
	var block string
	for _, m := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(sec, -1) {
		if strings.Contains(m[1], "\nkind: "+kind+"\n") {
			block = m[1]
		}
	}
	if block == "" {
		t.Fatalf("docs/vsa.md's Kyverno section has no %s snippet", kind)
	}
	// The key: the BEGIN..END lines around the placeholder, at their indent.
	lines := strings.Split(block, "\n")
	var out []string
	for k := 0; k < len(lines); k++ {
		l := lines[k]
		if strings.TrimSpace(l) != "-----BEGIN PUBLIC KEY-----" {
			out = append(out, l)
			continue
		}
		indent := l[:len(l)-len(strings.TrimLeft(l, " "))]
		for strings.TrimSpace(lines[k]) != "-----END PUBLIC KEY-----" {
			k++
		}
		for _, p := range strings.Split(strings.TrimSpace(pem), "\n") {
			out = append(out, indent+p)
		}
	}
	block = strings.Join(out, "\n")
	const exampleGlob = "pullgate.internal:5000/registry.example/*"
	if !strings.Contains(block, exampleGlob) || !strings.Contains(block, verifierID) {
		t.Fatalf("the %s snippet no longer names %s and %s", kind, exampleGlob, verifierID)
	}
	return strings.ReplaceAll(block, exampleGlob, glob)
}

var kyvernoSummary = regexp.MustCompile(`pass: (\d+), fail: (\d+), warn: (\d+), error: (\d+), skip: (\d+)`)

// TestKyvernoRequiresVSA: the Kyverno policies docs/vsa.md gives, applied
// by the real Kyverno engine (its CLI, `kyverno apply --registry`, which
// verifies images against the registry as the admission controller does),
// admit a Pod whose image has a PASSED pullgate VSA of the last day signed
// by the VSA key, and refuse one without a VSA, one whose VSA another key
// signed, another verifier's, a FAILED one and one two days old.
func TestKyvernoRequiresVSA(t *testing.T) {
	kyverno := tools.Need(t, "kyverno")
	e := newEnv(t, true)
	pem := string(mustRead(t, e.pub))
	glob := e.u.Host + "/*"
	now := time.Now().UTC()
	mk := func(repo string, edit func(*vsa.Summary) (signWithOther bool)) *harness.Image {
		img := e.u.PushImage(t, repo, "1", harness.ImageOptions{Layers: 1})
		if edit == nil {
			return img
		}
		s := e.summary(img, now.Add(-time.Minute))
		with := e.signer
		if edit(&s) {
			with = otherKey(t)
		}
		e.push(img, e.sign(s, with))
		return img
	}
	// Why each refusal is refused, as each policy says it: no VSA by the
	// key, or one whose content the conditions refuse.
	unsigned := map[string]string{"ImageValidatingPolicy": "no VSA signed by pullgate's VSA key", "ClusterPolicy": "no matching signatures found"}
	content := map[string]string{"ImageValidatingPolicy": "the VSA is not a PASSED one from " + verifierID, "ClusterPolicy": "attestation checks failed"}
	cases := []struct {
		name string
		img  *harness.Image
		why  map[string]string // nil: admitted
	}{
		{"passed", mk("passed", func(*vsa.Summary) bool { return false }), nil},
		{"no VSA", mk("novsa", nil), unsigned},
		{"another key", mk("otherkey", func(*vsa.Summary) bool { return true }), unsigned},
		{"another verifier", mk("otherverifier", func(s *vsa.Summary) bool {
			s.Verifier.ID = "https://pullgate.example/staging"
			return false
		}), content},
		{"FAILED", mk("failed", func(s *vsa.Summary) bool {
			s.VerificationResult, s.VerifiedLevels = vsa.Failed, nil
			return false
		}), content},
		{"two days old", mk("old", func(s *vsa.Summary) bool {
			s.TimeVerified = now.Add(-48 * time.Hour)
			return false
		}), content},
	}
	for _, kind := range []string{"ImageValidatingPolicy", "ClusterPolicy"} {
		pol := filepath.Join(e.dir, kind+".yaml")
		if err := os.WriteFile(pol, []byte(kyvernoSnippet(t, kind, pem, glob)), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, c := range cases {
			pod := filepath.Join(e.dir, "pod.yaml")
			os.WriteFile(pod, []byte("apiVersion: v1\nkind: Pod\nmetadata: {name: app, namespace: default}\nspec:\n  containers:\n    - name: app\n      image: "+
				e.u.Ref(c.img.Repo+"@"+c.img.Digest)+"\n"), 0o644)
			out, _ := e.run(kyverno, nil, "apply", pol, "--resource", pod, "--registry")
			m := kyvernoSummary.FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("%s, %s: no result summary from kyverno apply\n%s", kind, c.name, out)
			}
			admitted := m[1] != "0" && m[2] == "0" && m[4] == "0"
			switch {
			case admitted != (c.why == nil):
				t.Errorf("%s, %s: admitted=%v, want %v (%s)", kind, c.name, admitted, c.why == nil, m[0])
			case c.why != nil && !strings.Contains(out, c.why[kind]):
				t.Errorf("%s, %s: refused, but not because %q", kind, c.name, c.why[kind])
			}
		}
	}
}
