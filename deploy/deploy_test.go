package deploy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/distribution/distribution/v3/registry/storage/driver/factory"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/s3-aws"
	toml "github.com/pelletier/go-toml/v2"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/pullgate/pullgate/policy"
	"github.com/pullgate/pullgate/proxy/audit"
	"github.com/pullgate/pullgate/proxy/config"
	"github.com/pullgate/pullgate/proxy/upstream"
)

var builds = []string{"kubernetes/base", "kubernetes/overlays/example", "kubernetes/overlays/s3-replicas"}

// typed returns an empty value of the API type for a document.
func typed(apiVersion, kind string) (any, error) {
	switch apiVersion + " " + kind {
	case "v1 Namespace":
		return &corev1.Namespace{}, nil
	case "v1 ServiceAccount":
		return &corev1.ServiceAccount{}, nil
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "v1 Service":
		return &corev1.Service{}, nil
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}, nil
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, nil
	case "networking.k8s.io/v1 NetworkPolicy":
		return &networkingv1.NetworkPolicy{}, nil
	case "v1 Secret":
		return nil, errors.New("a Secret with values is checked in: reference Secrets by name, create them out of band")
	}
	return nil, fmt.Errorf("unexpected %s %s", apiVersion, kind)
}

// strictDecode decodes one YAML document into its API type the way the API
// server does with strict field validation: duplicate keys, unknown fields
// and fields in the wrong case are errors.
func strictDecode(doc []byte) (any, error) {
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, err
	}
	var tm struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := json.Unmarshal(js, &tm); err != nil {
		return nil, err
	}
	var v any
	if tm.Kind == "Kustomization" {
		v = &kustomization{}
	} else if v, err = typed(tm.APIVersion, tm.Kind); err != nil {
		return nil, err
	}
	strict, err := kjson.UnmarshalStrict(js, v, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return nil, err
	}
	return v, errors.Join(strict...)
}

func TestEveryManifestParsesStrictly(t *testing.T) {
	n := 0
	err := filepath.WalkDir("kubernetes", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if ext := filepath.Ext(path); ext != ".yaml" && ext != ".yml" {
			t.Errorf("%s: unexpected file in the manifests", path)
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		docs := splitDocs(b)
		if len(docs) == 0 {
			t.Errorf("%s: no document", path)
		}
		for i, doc := range docs {
			n++
			if _, err := strictDecode(doc); err != nil {
				t.Errorf("%s: document %d: %v", path, i+1, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 15 {
		t.Fatalf("only %d documents found", n)
	}
}

// The strict decoder is what makes the test above meaningful: it refuses a
// misspelled or misplaced field that a lenient decoder would drop.
func TestStrictDecoderRefusesUnknownFields(t *testing.T) {
	b, err := os.ReadFile("kubernetes/base/deployment.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, mutate := range []func(string) string{
		func(s string) string {
			return strings.Replace(s, "readOnlyRootFilesystem:", "readOnlyRootFileSystem:", 1)
		},
		func(s string) string { return strings.Replace(s, "  replicas: 2", "  replicas: 2\n  replica: 2", 1) },
		func(s string) string {
			return strings.Replace(s, "          imagePullPolicy:", "          pullPolicy: Always\n          imagePullPolicy:", 1)
		},
	} {
		bad := mutate(string(b))
		if bad == string(b) {
			t.Fatal("mutation did not apply")
		}
		if _, err := strictDecode([]byte(bad)); err == nil {
			t.Errorf("strict decode accepted an unknown field")
		}
	}
}

func TestKustomizationsReferenceExistingFiles(t *testing.T) {
	var dirs []string
	filepath.WalkDir("kubernetes", func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == "kustomization.yaml" {
			dirs = append(dirs, filepath.Dir(path))
		}
		return err
	})
	if !slices.Equal(dirs, []string{"kubernetes/base", "kubernetes/overlays/example", "kubernetes/overlays/s3-replicas"}) {
		t.Fatalf("kustomizations %v", dirs)
	}
	for _, dir := range dirs {
		k, err := readKustomization(dir)
		if err != nil {
			t.Fatal(err)
		}
		listed := map[string]bool{"kustomization.yaml": true}
		for _, r := range k.Resources {
			p := filepath.Join(dir, r)
			st, err := os.Stat(p)
			switch {
			case err != nil:
				t.Errorf("%s: resource %s: %v", dir, r, err)
			case st.IsDir():
				if _, err := os.Stat(filepath.Join(p, "kustomization.yaml")); err != nil {
					t.Errorf("%s: resource directory %s has no kustomization.yaml", dir, r)
				}
			}
			listed[r] = true
		}
		for _, p := range k.Patches {
			if _, err := os.Stat(filepath.Join(dir, p.Path)); err != nil {
				t.Errorf("%s: patch %s: %v", dir, p.Path, err)
			}
			listed[p.Path] = true
		}
		// Every file in the directory is used (no stale manifest).
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if !e.IsDir() && !listed[e.Name()] {
				t.Errorf("%s: %s is not referenced by kustomization.yaml", dir, e.Name())
			}
		}
		// Every patch applies to a resource (build fails otherwise).
		if _, err := build(dir); err != nil {
			t.Error(err)
		}
	}
}

// rendered is one kustomize build, decoded into API types.
type rendered struct {
	dir        string
	deployment *appsv1.Deployment
	configMaps map[string]*corev1.ConfigMap
	services   []*corev1.Service
	pdbs       []*policyv1.PodDisruptionBudget
	netpols    []*networkingv1.NetworkPolicy
	namespaces []*corev1.Namespace
	sas        []*corev1.ServiceAccount
}

func render(t *testing.T, dir string) *rendered {
	t.Helper()
	objs, err := build(dir)
	if err != nil {
		t.Fatal(err)
	}
	r := &rendered{dir: dir, configMaps: map[string]*corev1.ConfigMap{}}
	for _, o := range objs {
		b, err := json.Marshal(o.m)
		if err != nil {
			t.Fatal(err)
		}
		v, err := strictDecode(b)
		if err != nil {
			t.Fatalf("%s: %s after patches: %v", dir, o.key(), err)
		}
		switch x := v.(type) {
		case *appsv1.Deployment:
			if r.deployment != nil {
				t.Fatalf("%s: two Deployments", dir)
			}
			r.deployment = x
		case *corev1.ConfigMap:
			r.configMaps[x.Name] = x
		case *corev1.Service:
			r.services = append(r.services, x)
		case *policyv1.PodDisruptionBudget:
			r.pdbs = append(r.pdbs, x)
		case *networkingv1.NetworkPolicy:
			r.netpols = append(r.netpols, x)
		case *corev1.Namespace:
			r.namespaces = append(r.namespaces, x)
		case *corev1.ServiceAccount:
			r.sas = append(r.sas, x)
		}
	}
	if r.deployment == nil || len(r.services) != 1 || len(r.pdbs) != 1 || len(r.netpols) == 0 || len(r.namespaces) != 1 || len(r.sas) != 1 {
		t.Fatalf("%s: incomplete build: deployment %v, %d services, %d PDBs, %d network policies, %d namespaces, %d service accounts",
			dir, r.deployment != nil, len(r.services), len(r.pdbs), len(r.netpols), len(r.namespaces), len(r.sas))
	}
	return r
}

func (r *rendered) container(t *testing.T) *corev1.Container {
	t.Helper()
	cs := r.deployment.Spec.Template.Spec.Containers
	if len(cs) != 1 || cs[0].Name != "pullgate" {
		t.Fatalf("%s: containers %d", r.dir, len(cs))
	}
	return &cs[0]
}

func TestDeploymentIsHardened(t *testing.T) {
	for _, dir := range builds {
		t.Run(dir, func(t *testing.T) {
			r := render(t, dir)
			ps := r.deployment.Spec.Template.Spec
			psc := ps.SecurityContext
			if psc == nil {
				t.Fatal("no pod securityContext")
			}
			if psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
				t.Error("pod runAsNonRoot is not true")
			}
			if psc.RunAsUser == nil || *psc.RunAsUser == 0 {
				t.Error("pod runAsUser is root or unset")
			}
			if psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Error("pod seccompProfile is not RuntimeDefault")
			}
			if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
				t.Error("service account token is mounted")
			}
			if ps.HostNetwork || ps.HostPID || ps.HostIPC {
				t.Error("host namespaces shared")
			}
			c := r.container(t)
			sc := c.SecurityContext
			if sc == nil {
				t.Fatal("no container securityContext")
			}
			if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
				t.Error("runAsNonRoot is not true")
			}
			if sc.RunAsUser != nil && *sc.RunAsUser == 0 {
				t.Error("runAsUser 0")
			}
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				t.Error("readOnlyRootFilesystem is not true")
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Error("allowPrivilegeEscalation is not false")
			}
			if sc.Privileged != nil && *sc.Privileged {
				t.Error("privileged")
			}
			if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
				t.Errorf("capabilities %+v: want drop [ALL], add none", sc.Capabilities)
			}
			if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Error("seccompProfile is not RuntimeDefault")
			}
			for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				req, lim := c.Resources.Requests[res], c.Resources.Limits[res]
				if req.IsZero() || lim.IsZero() {
					t.Errorf("%s: request %v, limit %v: both are required", res, req.String(), lim.String())
				} else if req.Cmp(lim) > 0 {
					t.Errorf("%s: request %v above limit %v", res, req.String(), lim.String())
				}
			}
			if strings.HasSuffix(c.Image, ":latest") || !strings.Contains(c.Image, ":") {
				t.Errorf("image %q is not pinned to a tag", c.Image)
			}
			if ns := r.namespaces[0]; ns.Labels["pod-security.kubernetes.io/enforce"] != "restricted" {
				t.Errorf("namespace %s does not enforce the restricted Pod Security Standard", ns.Name)
			}
		})
	}
}

// mountFor returns the volume mount that holds path (the longest prefix).
func mountFor(c *corev1.Container, path string) *corev1.VolumeMount {
	var best *corev1.VolumeMount
	for i := range c.VolumeMounts {
		m := &c.VolumeMounts[i]
		if path == m.MountPath || strings.HasPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/") {
			if best == nil || len(m.MountPath) > len(best.MountPath) {
				best = m
			}
		}
	}
	return best
}

func volume(ps *corev1.PodSpec, name string) *corev1.Volume {
	for i := range ps.Volumes {
		if ps.Volumes[i].Name == name {
			return &ps.Volumes[i]
		}
	}
	return nil
}

func port(c *corev1.Container, name string) int32 {
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	return 0
}

func listenPort(t *testing.T, addr string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return int32(n)
}

// writeTrustFiles creates a public key for every trust key the policy
// names, at the path it names relative to the policy file.
func writeTrustFiles(t *testing.T, policyPath string, src []byte) {
	t.Helper()
	var doc struct {
		Trust struct {
			Keys []struct {
				Path string `json:"path"`
			} `json:"keys"`
		} `json:"trust"`
	}
	if err := yaml.Unmarshal(src, &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range doc.Trust.Keys {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
		p := filepath.Join(filepath.Dir(policyPath), k.Path)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestEmbeddedConfigLoads loads every build's pullgate.yaml with pullgate's
// config loader and its policy with the policy loader, and checks that the
// Deployment provides every path the configuration names.
func TestEmbeddedConfigLoads(t *testing.T) {
	for _, dir := range builds {
		t.Run(dir, func(t *testing.T) {
			r := render(t, dir)
			cm := r.configMaps["pullgate-config"]
			if cm == nil {
				t.Fatal("no ConfigMap pullgate-config")
			}
			cfg, err := config.Parse([]byte(cm.Data["pullgate.yaml"]))
			if err != nil {
				t.Fatalf("pullgate.yaml does not load: %v", err)
			}
			c := r.container(t)
			ps := &r.deployment.Spec.Template.Spec

			// The config file itself is where args say.
			cfgArg := ""
			for i, a := range c.Args {
				if a == "--config" && i+1 < len(c.Args) {
					cfgArg = c.Args[i+1]
				}
			}
			checkConfigMapFile(t, c, ps, cm, cfgArg)

			// The policy: in the same ConfigMap, loads with its trust files.
			if !filepath.IsAbs(cfg.Policy) {
				t.Fatalf("policy path %q is relative", cfg.Policy)
			}
			checkConfigMapFile(t, c, ps, cm, cfg.Policy)
			tmp := t.TempDir()
			polPath := filepath.Join(tmp, "config", filepath.Base(cfg.Policy))
			os.MkdirAll(filepath.Dir(polPath), 0o755)
			src := []byte(cm.Data[filepath.Base(cfg.Policy)])
			os.WriteFile(polPath, src, 0o644)
			writeTrustFiles(t, polPath, src)
			pol, err := policy.Load(polPath)
			if err != nil {
				t.Fatalf("policy does not load: %v", err)
			}
			if len(pol.Rules) == 0 {
				t.Fatal("policy has no rules")
			}
			// Trust files sit in a Secret mount at the same relative place.
			for _, f := range pol.Files()[1:] {
				rel, _ := filepath.Rel(filepath.Dir(polPath), f)
				inPod := filepath.Join(filepath.Dir(cfg.Policy), rel)
				m := mountFor(c, inPod)
				if m == nil || !m.ReadOnly || volume(ps, m.Name) == nil || volume(ps, m.Name).Secret == nil {
					t.Errorf("trust file %s is not in a read-only Secret mount", inPod)
				}
			}

			// Upstream credentials come from Secret mounts.
			for _, u := range cfg.Upstreams {
				if u.Password != "" {
					t.Errorf("upstream %s: password in the ConfigMap; use passwordFile", u.Name)
				}
				for _, p := range []string{u.PasswordFile, u.DockerConfig, u.CA} {
					if p == "" {
						continue
					}
					checkSecretFile(t, c, ps, p)
				}
				if u.DockerConfig != "" {
					checkDockerConfigSecret(t, u)
				}
			}

			// Writable paths are on emptyDir mounts (the root is read-only).
			var writable []string
			if cfg.Storage.Driver == "" || cfg.Storage.Driver == "filesystem" {
				writable = append(writable, cfg.Storage.Path)
			}
			if cfg.Storage.SpoolDir == "" {
				t.Error("storage.spoolDir is not set: the default may be on the read-only root")
			}
			writable = append(writable, cfg.Storage.SpoolDir)
			if !audit.IsStdout(cfg.Audit.Path) && cfg.Audit.Path != "" {
				writable = append(writable, cfg.Audit.Path)
			}
			for _, p := range writable {
				m := mountFor(c, p)
				if m == nil || m.ReadOnly || volume(ps, m.Name) == nil || volume(ps, m.Name).EmptyDir == nil {
					t.Errorf("%s is not on a writable emptyDir mount", p)
				}
			}
			if m := mountFor(c, "/tmp/x"); m == nil || m.ReadOnly {
				t.Error("/tmp is not writable")
			}

			// Ports and probes agree with the config.
			if got, want := port(c, "registry"), listenPort(t, cfg.Listen); got != want {
				t.Errorf("registry port %d, config listen %s", got, cfg.Listen)
			}
			if cfg.Admin == "" {
				t.Fatal("admin listener disabled: probes and metrics need it")
			}
			if got, want := port(c, "admin"), listenPort(t, cfg.Admin); got != want {
				t.Errorf("admin port %d, config admin %s", got, cfg.Admin)
			}
			for name, pr := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe} {
				want := "/healthz"
				if name == "readiness" {
					want = "/readyz"
				}
				if pr == nil || pr.HTTPGet == nil || pr.HTTPGet.Path != want || pr.HTTPGet.Port.String() != "admin" {
					t.Errorf("%s probe: want GET %s on the admin port, got %+v", name, want, pr)
				}
			}

			// Object store: credentials from a Secret, never in the config;
			// parameters known to and accepted by distribution's driver.
			if cfg.Storage.Driver == "s3" {
				checkS3(t, r, cfg)
			}
		})
	}
}

func checkConfigMapFile(t *testing.T, c *corev1.Container, ps *corev1.PodSpec, cm *corev1.ConfigMap, path string) {
	t.Helper()
	m := mountFor(c, path)
	if m == nil || !m.ReadOnly {
		t.Errorf("%s is not in a read-only mount", path)
		return
	}
	v := volume(ps, m.Name)
	if v == nil || v.ConfigMap == nil || v.ConfigMap.Name != cm.Name {
		t.Errorf("%s: mount %s is not ConfigMap %s", path, m.Name, cm.Name)
		return
	}
	rel := strings.TrimPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/")
	if _, ok := cm.Data[rel]; !ok {
		t.Errorf("%s: ConfigMap %s has no key %q", path, cm.Name, rel)
	}
}

func checkSecretFile(t *testing.T, c *corev1.Container, ps *corev1.PodSpec, path string) {
	t.Helper()
	m := mountFor(c, path)
	if m == nil || !m.ReadOnly {
		t.Errorf("%s is not in a read-only mount", path)
		return
	}
	v := volume(ps, m.Name)
	if v == nil || v.Secret == nil || v.Secret.SecretName == "" {
		t.Errorf("%s: mount %s is not a Secret", path, m.Name)
		return
	}
	rel := strings.TrimPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/")
	if len(v.Secret.Items) > 0 {
		found := false
		for _, it := range v.Secret.Items {
			found = found || it.Path == rel
		}
		if !found {
			t.Errorf("%s: Secret %s projects no item to %q", path, v.Secret.SecretName, rel)
		}
	}
}

func checkS3(t *testing.T, r *rendered, cfg *config.Config) {
	t.Helper()
	known := map[string]bool{}
	for _, k := range strings.Fields(`accelerate accesskey bucket chunksize encrypt forcepathstyle keyid loglevel
		multipartcopychunksize multipartcopymaxconcurrency multipartcopythresholdsize objectacl redirectendpoint region
		regionendpoint rootdirectory secretkey secure skipverify storageclass usedualstack usefipsendpoint useragent v4auth`) {
		known[k] = true
	}
	for k := range cfg.Storage.Parameters {
		if !known[k] {
			t.Errorf("storage.parameters.%s is not a parameter of the s3 driver", k)
		}
	}
	if _, ok := cfg.Storage.Parameters["accesskey"]; ok {
		t.Error("storage.parameters.accesskey in the ConfigMap: use the Secret and AWS_ACCESS_KEY_ID")
	}
	if _, ok := cfg.Storage.Parameters["secretkey"]; ok {
		t.Error("storage.parameters.secretkey in the ConfigMap: use the Secret and AWS_SECRET_ACCESS_KEY")
	}
	c := r.container(t)
	for _, name := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
		found := false
		for _, e := range c.Env {
			if e.Name == name {
				found = true
				if e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Name == "" {
					t.Errorf("env %s does not come from a Secret", name)
				}
			}
		}
		if !found {
			t.Errorf("env %s missing", name)
		}
	}
	// The driver accepts the parameters (it contacts nothing when created).
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	if _, err := factory.Create(context.Background(), cfg.Storage.Driver, cfg.Storage.Parameters); err != nil {
		t.Errorf("s3 driver refuses the parameters: %v", err)
	}
	if rep := r.deployment.Spec.Replicas; rep == nil || *rep < 2 {
		t.Error("the shared-store variant runs fewer than 2 replicas")
	}
	pdb := r.pdbs[0]
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() < 1 || pdb.Spec.MaxUnavailable != nil {
		t.Errorf("PDB %+v: want minAvailable only", pdb.Spec)
	}
}

func TestServicePDBAndNetworkPolicySelectThePod(t *testing.T) {
	for _, dir := range builds {
		t.Run(dir, func(t *testing.T) {
			r := render(t, dir)
			podLabels := r.deployment.Spec.Template.Labels
			matches := func(sel map[string]string) bool {
				if len(sel) == 0 {
					return false
				}
				for k, v := range sel {
					if podLabels[k] != v {
						return false
					}
				}
				return true
			}
			if !matches(r.deployment.Spec.Selector.MatchLabels) {
				t.Error("Deployment selector does not match its pod template")
			}
			svc := r.services[0]
			if !matches(svc.Spec.Selector) {
				t.Error("Service selector does not match the pods")
			}
			c := r.container(t)
			for _, p := range svc.Spec.Ports {
				if port(c, p.TargetPort.String()) == 0 {
					t.Errorf("Service port %s targets %s, which the container does not name", p.Name, p.TargetPort.String())
				}
			}
			if !matches(r.pdbs[0].Spec.Selector.MatchLabels) {
				t.Error("PDB selector does not match the pods")
			}
			var in, egressPorts []string
			for _, np := range r.netpols {
				if !matches(np.Spec.PodSelector.MatchLabels) {
					t.Errorf("NetworkPolicy %s does not select the pods", np.Name)
				}
				for _, rule := range np.Spec.Ingress {
					for _, p := range rule.Ports {
						in = append(in, p.Port.String())
						if p.Port.IntValue() == 9090 {
							for _, f := range rule.From {
								if f.NamespaceSelector == nil || f.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] != "monitoring" || f.IPBlock != nil {
									t.Errorf("admin port open to more than the monitoring namespace: %+v", f)
								}
							}
						}
					}
				}
				for _, rule := range np.Spec.Egress {
					for _, p := range rule.Ports {
						egressPorts = append(egressPorts, fmt.Sprintf("%s/%s", *p.Protocol, p.Port.String()))
					}
				}
			}
			for _, want := range []string{"5000", "9090"} {
				if !slices.Contains(in, want) {
					t.Errorf("no ingress to port %s", want)
				}
			}
			for _, want := range []string{"UDP/53", "TCP/53", "TCP/443"} {
				if !slices.Contains(egressPorts, want) {
					t.Errorf("no egress to %s (have %v)", want, egressPorts)
				}
			}
			if np := r.netpols[0]; !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) || !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
				t.Error("base NetworkPolicy does not restrict both directions")
			}
		})
	}
}

// pullgateAddr is the address node configs point at: the example overlay's
// fixed ClusterIP and the registry port.
func pullgateAddr(t *testing.T) (string, *config.Config) {
	t.Helper()
	r := render(t, "kubernetes/overlays/example")
	svc := r.services[0]
	if svc.Spec.ClusterIP == "" || net.ParseIP(svc.Spec.ClusterIP) == nil {
		t.Fatalf("example Service has no fixed clusterIP")
	}
	var p int32
	for _, sp := range svc.Spec.Ports {
		if sp.Name == "registry" {
			p = sp.Port
		}
	}
	cfg, err := config.Parse([]byte(r.configMaps["pullgate-config"].Data["pullgate.yaml"]))
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort(svc.Spec.ClusterIP, strconv.Itoa(int(p))), cfg
}

type hostsTOML struct {
	Server       string               `toml:"server"`
	Capabilities []string             `toml:"capabilities"`
	CA           any                  `toml:"ca"`
	SkipVerify   *bool                `toml:"skip_verify"`
	Host         map[string]hostEntry `toml:"host"`
}

type hostEntry struct {
	Capabilities []string          `toml:"capabilities"`
	CA           any               `toml:"ca"`
	Client       any               `toml:"client"`
	SkipVerify   *bool             `toml:"skip_verify"`
	OverridePath *bool             `toml:"override_path"`
	Header       map[string]any    `toml:"header"`
	DialTimeout  string            `toml:"dial_timeout"`
	Extra        map[string]string `toml:"-"`
}

func decodeTOMLStrict(t *testing.T, path string, v any) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := toml.NewDecoder(f)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// frontedUpstreams is every upstream name the shipped pullgate
// configurations front: the node configurations must route each of them.
func frontedUpstreams(t *testing.T) []string {
	t.Helper()
	var names []string
	for _, dir := range builds {
		cfg, err := config.Parse([]byte(render(t, dir).configMaps["pullgate-config"].Data["pullgate.yaml"]))
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		for _, u := range cfg.Upstreams {
			if !slices.Contains(names, u.Name) {
				names = append(names, u.Name)
			}
		}
	}
	return names
}

// TestContainerdHostsTOML: each hosts.toml parses, has pullgate as its
// server and only a push-only [host] entry (containerd tries pulling hosts
// and then server: an upstream server falls back around pullgate, a pulling
// pullgate host next to a pullgate server asks pullgate twice and records
// each denial twice; containerd 1.6 ignores a file with no [host]), and
// there is one for every upstream pullgate fronts plus _default, so no
// registry is pulled directly.
func TestContainerdHostsTOML(t *testing.T) {
	addr, cfg := pullgateAddr(t)
	dirs, err := os.ReadDir("nodes/containerd/certs.d")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range dirs {
		names = append(names, d.Name())
		path := filepath.Join("nodes/containerd/certs.d", d.Name(), "hosts.toml")
		var h hostsTOML
		decodeTOMLStrict(t, path, &h)
		if _, ok := cfg.Upstream(d.Name()); !ok && d.Name() != "_default" {
			t.Errorf("%s: pullgate has no upstream named %q", path, d.Name())
		}
		su, err := url.Parse(h.Server)
		if err != nil || su.Host != addr || (su.Scheme != "http" && su.Scheme != "https") || (su.Path != "" && su.Path != "/") {
			t.Errorf("%s: server %q is not pullgate (%s): a pull pullgate refuses would go to the registry", path, h.Server, addr)
		}
		// containerd 1.6 ignores a file without a [host] table (and pulls
		// from the registry); an entry that can pull or resolve would be
		// tried before server, a second request per refused pull.
		if len(h.Host) == 0 {
			t.Errorf("%s: no [host] table: containerd 1.6 refuses the file and pulls from the registry itself", path)
		}
		for k, e := range h.Host {
			if hu, err := url.Parse(k); err != nil || hu.Host != addr {
				t.Errorf("%s: host %q is not pullgate (%s)", path, k, addr)
			}
			if len(e.Capabilities) == 0 || slices.Contains(e.Capabilities, "pull") || slices.Contains(e.Capabilities, "resolve") {
				t.Errorf("%s: host %q can pull (capabilities %v): containerd tries it and then server, so each refused pull reaches pullgate twice", path, k, e.Capabilities)
			}
		}
		for _, c := range h.Capabilities {
			if c != "pull" && c != "resolve" {
				t.Errorf("%s: capability %q: pullgate only serves pull and resolve", path, c)
			}
		}
		if h.SkipVerify != nil && *h.SkipVerify {
			t.Errorf("%s: skip_verify", path)
		}
	}
	for _, want := range append(frontedUpstreams(t), "_default") {
		if !slices.Contains(names, want) {
			what := want
			if want == "_default" {
				what = "every registry without a directory of its own"
			}
			t.Errorf("no certs.d/%s/hosts.toml: containerd pulls %s directly", want, what)
		}
	}
	// The strict decoder refuses an unknown key (containerd ignores it).
	bad := filepath.Join(t.TempDir(), "hosts.toml")
	os.WriteFile(bad, []byte("sever = \"http://x\"\n"), 0o644)
	f, _ := os.Open(bad)
	defer f.Close()
	dec := toml.NewDecoder(f)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&hostsTOML{}); err == nil {
		t.Error("a misspelled key was accepted")
	}
}

// TestContainerdConfigFragments: each config.toml fragment sets config_path
// under the key its containerd version reads, and none has the legacy
// registry.mirrors/configs (with config_path they make the CRI plugin fail).
func TestContainerdConfigFragments(t *testing.T) {
	want := map[string]struct {
		version int
		plugin  string
	}{
		"config-1.6.toml": {2, "io.containerd.grpc.v1.cri"},
		"config-1.7.toml": {2, "io.containerd.grpc.v1.cri"},
		"config-2.x.toml": {3, "io.containerd.cri.v1.images"},
	}
	for name, w := range want {
		b, err := os.ReadFile(filepath.Join("nodes/containerd", name))
		if err != nil {
			t.Fatal(err)
		}
		var c struct {
			Version int                                  `toml:"version"`
			Plugins map[string]map[string]map[string]any `toml:"plugins"`
		}
		if err := toml.Unmarshal(b, &c); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if c.Version != w.version {
			t.Errorf("%s: version %d, want %d", name, c.Version, w.version)
		}
		if len(c.Plugins) != 1 {
			t.Errorf("%s: plugins %v, want only %s", name, c.Plugins, w.plugin)
		}
		reg := c.Plugins[w.plugin]["registry"]
		if reg["config_path"] != "/etc/containerd/certs.d" {
			t.Errorf("%s: %s.registry.config_path = %v", name, w.plugin, reg["config_path"])
		}
		for k := range reg {
			if k != "config_path" {
				t.Errorf("%s: registry.%s next to config_path", name, k)
			}
		}
	}
}

type registriesConf struct {
	UnqualifiedSearchRegistries []string          `toml:"unqualified-search-registries"`
	ShortNameMode               string            `toml:"short-name-mode"`
	Aliases                     map[string]string `toml:"aliases"`
	Registry                    []struct {
		Prefix   string `toml:"prefix"`
		Location string `toml:"location"`
		Insecure bool   `toml:"insecure"`
		Blocked  bool   `toml:"blocked"`
		Mirror   []struct {
			Location       string `toml:"location"`
			Insecure       bool   `toml:"insecure"`
			PullFromMirror string `toml:"pull-from-mirror"`
		} `toml:"mirror"`
	} `toml:"registry"`
}

// TestCRIORegistriesConf: every registry's location is pullgate in path
// form (<pullgate>/<registry>) with no mirror (containers/image tries the
// mirrors and then the location: a real registry there falls back around
// pullgate, pullgate in both records each denial twice), every upstream
// pullgate fronts and every registry an alias names is listed, and short
// names resolve only through pullgate.
func TestCRIORegistriesConf(t *testing.T) {
	addr, _ := pullgateAddr(t)
	var rc registriesConf
	decodeTOMLStrict(t, "nodes/crio/registries.conf", &rc)
	var prefixes []string
	blockedTLDs := 0
	for _, r := range rc.Registry {
		if strings.HasPrefix(r.Prefix, "*.") {
			// A wildcard entry may only block (refused before any request).
			if !r.Blocked || r.Location != "" || len(r.Mirror) != 0 {
				t.Errorf("registry %q: a wildcard entry must be blocked, with no location or mirror", r.Prefix)
			}
			blockedTLDs++
			continue
		}
		prefixes = append(prefixes, r.Prefix)
		want := addr + "/" + r.Prefix
		if r.Location != want {
			t.Errorf("registry %q: location %q, want %q (a real registry here is a way around pullgate)", r.Prefix, r.Location, want)
		}
		if len(r.Mirror) != 0 {
			t.Errorf("registry %q: mirror entries: each pull would reach pullgate twice (mirror, then location)", r.Prefix)
		}
	}
	if blockedTLDs == 0 {
		t.Error("no blocked wildcard entries: registries nobody lists are contacted before policy.json refuses them")
	}
	for _, u := range frontedUpstreams(t) {
		if !slices.Contains(prefixes, u) {
			t.Errorf("no [[registry]] for %s, which pullgate fronts: pulled directly", u)
		}
	}
	if rc.ShortNameMode != "enforcing" {
		t.Errorf("short-name-mode %q", rc.ShortNameMode)
	}
	for _, s := range rc.UnqualifiedSearchRegistries {
		if !slices.Contains(prefixes, s) {
			t.Errorf("unqualified-search registry %q is not routed to pullgate", s)
		}
	}
	files, _ := filepath.Glob("nodes/crio/registries.conf.d/*.conf")
	if len(files) == 0 {
		t.Fatal("no registries.conf.d drop-in overriding the distribution's aliases")
	}
	for _, f := range files {
		var d registriesConf
		decodeTOMLStrict(t, f, &d)
		if len(d.Aliases) == 0 {
			t.Errorf("%s: no [aliases]", f)
		}
		for name, v := range d.Aliases {
			if v == "" {
				continue // erased: resolves through the search registries
			}
			reg, _, _ := strings.Cut(v, "/")
			if !slices.Contains(prefixes, reg) {
				t.Errorf("%s: alias %q = %q: %s is not routed to pullgate", f, name, v, reg)
			}
		}
		// Loaded after the distribution's 000-shortnames.conf / shortnames.conf.
		if base := filepath.Base(f); base <= "shortnames.conf" {
			t.Errorf("%s loads before the distribution's shortnames.conf and is overridden by it", base)
		}
	}
}

// TestCRIOPolicyJSON: policy.json rejects by default and accepts docker
// images only from registries pullgate fronts (each routed to pullgate by
// registries.conf), so an image from an unlisted registry is refused.
func TestCRIOPolicyJSON(t *testing.T) {
	b, err := os.ReadFile("nodes/crio/policy.json")
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		Default    []map[string]any                       `json:"default"`
		Transports map[string]map[string][]map[string]any `json:"transports"`
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatal(err)
	}
	if len(p.Default) != 1 || p.Default[0]["type"] != "reject" {
		t.Errorf("default %v: want [{type: reject}]", p.Default)
	}
	var rc registriesConf
	decodeTOMLStrict(t, "nodes/crio/registries.conf", &rc)
	routed := map[string]bool{}
	for _, r := range rc.Registry {
		routed[r.Prefix] = true
	}
	fronted := frontedUpstreams(t)
	var scopes []string
	for scope, reqs := range p.Transports["docker"] {
		scopes = append(scopes, scope)
		host, _, _ := strings.Cut(scope, "/")
		if len(reqs) == 0 || reqs[0]["type"] == "reject" {
			continue
		}
		if !routed[host] || !slices.Contains(fronted, host) {
			t.Errorf("docker scope %q accepted: not a registry pullgate fronts through registries.conf", scope)
		}
	}
	for _, u := range fronted {
		if !slices.Contains(scopes, u) {
			t.Errorf("no docker scope for %s: its images are refused on the node", u)
		}
	}
}

// TestNodeFirewallNFT: the nftables ruleset is accepted by nft (check mode,
// nothing is loaded) and lets the node reach pullgate's example address.
func TestNodeFirewallNFT(t *testing.T) {
	addr, _ := pullgateAddr(t)
	host, _, _ := net.SplitHostPort(addr)
	path := "nodes/firewall/pullgate-egress.nft"
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`set pullgate_v4 \{[^}]*elements = \{ ` + regexp.QuoteMeta(host) + ` \}`).Match(b) {
		t.Errorf("%s: set pullgate_v4 does not hold %s", path, host)
	}
	nft, err := exec.LookPath("nft")
	if err != nil {
		if os.Getenv("PULLGATE_REQUIRE_TOOLS") != "" {
			t.Fatal("nft not installed (apt-get install nftables)")
		}
		t.Skip("nft not installed")
	}
	if out, err := exec.Command(nft, "-c", "-f", path).CombinedOutput(); err != nil {
		t.Fatalf("nft -c -f %s: %v\n%s", path, err, out)
	}
	// A broken copy is refused: the check is real.
	bad := filepath.Join(t.TempDir(), "bad.nft")
	os.WriteFile(bad, []byte(strings.Replace(string(b), "reject with tcp reset", "reject with tcp rset", 1)), 0o644)
	if err := exec.Command(nft, "-c", "-f", bad).Run(); err == nil {
		t.Error("nft -c accepted a broken ruleset")
	}
}

// TestWorkloadEgressPolicy: the workload namespace policy selects every pod,
// restricts egress, allows pullgate's pods on the registry port, and allows
// no address outside the cluster.
func TestWorkloadEgressPolicy(t *testing.T) {
	b, err := os.ReadFile("kubernetes/workload-egress/networkpolicy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	v, err := strictDecode(b)
	if err != nil {
		t.Fatal(err)
	}
	np := v.(*networkingv1.NetworkPolicy)
	if len(np.Spec.PodSelector.MatchLabels)+len(np.Spec.PodSelector.MatchExpressions) != 0 {
		t.Error("does not select every pod of the namespace")
	}
	if !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}) {
		t.Errorf("policyTypes %v", np.Spec.PolicyTypes)
	}
	r := render(t, "kubernetes/base")
	podLabels := r.deployment.Spec.Template.Labels
	ns := r.namespaces[0].Name
	toPullgate := false
	for _, rule := range np.Spec.Egress {
		if len(rule.To) == 0 {
			t.Error("an egress rule with no 'to' allows every destination")
		}
		for _, peer := range rule.To {
			if peer.IPBlock != nil {
				t.Errorf("ipBlock %s: an address outside the cluster", peer.IPBlock.CIDR)
			}
			if peer.NamespaceSelector != nil && peer.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] == ns && peer.PodSelector != nil {
				sel := peer.PodSelector.MatchLabels
				match := len(sel) > 0
				for k, v := range sel {
					match = match && podLabels[k] == v
				}
				for _, p := range rule.Ports {
					toPullgate = toPullgate || (match && p.Port.IntValue() == 5000)
				}
			}
		}
	}
	if !toPullgate {
		t.Error("no egress to the pullgate pods on port 5000")
	}
}

// TestDockerDaemonJSON: registry-mirrors (Docker mirrors Docker Hub only,
// and refuses a mirror URL with a path) pointing at pullgate.
func TestDockerDaemonJSON(t *testing.T) {
	addr, cfg := pullgateAddr(t)
	// dockerd sends unprefixed Docker Hub paths: pullgate must route them
	// to its Docker Hub upstream, or it answers 404 and dockerd goes to
	// Docker Hub by itself.
	hub := false
	for _, u := range cfg.Upstreams {
		if u.Name == cfg.DefaultUpstream {
			c, err := upstream.New(config.Upstream{Name: u.Name, URL: u.URL}, nil)
			hub = err == nil && c.IsDockerHub()
		}
	}
	if !hub {
		t.Errorf("defaultUpstream %q of the example overlay is not a Docker Hub upstream", cfg.DefaultUpstream)
	}
	b, err := os.ReadFile("nodes/docker/daemon.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		RegistryMirrors    []string `json:"registry-mirrors"`
		InsecureRegistries []string `json:"insecure-registries"`
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		t.Fatal(err)
	}
	if len(d.RegistryMirrors) != 1 {
		t.Fatalf("registry-mirrors %v", d.RegistryMirrors)
	}
	u, err := url.Parse(d.RegistryMirrors[0])
	if err != nil || u.Host != addr || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		t.Fatalf("mirror %q: want %s with no path (dockerd refuses a path)", d.RegistryMirrors[0], addr)
	}
	if u.Scheme == "http" && !slices.Contains(d.InsecureRegistries, addr) {
		t.Errorf("plain-HTTP mirror %s is not in insecure-registries", addr)
	}
}

// checkDockerConfigSecret builds the upstream client from the Secret that
// docs/deploy.md tells operators to create (`kubectl create secret
// docker-registry --docker-server=...`): its config.json must hold
// credentials that this upstream's URL finds.
func checkDockerConfigSecret(t *testing.T, u config.Upstream) {
	t.Helper()
	doc, err := os.ReadFile("../docs/deploy.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`--docker-server=(\S+)`).FindSubmatch(doc)
	if m == nil {
		t.Fatal("docs/deploy.md has no --docker-server for the upstream credentials Secret")
	}
	// kubectl's docker-registry Secret format.
	auth := base64.StdEncoding.EncodeToString([]byte("acme-bot:token"))
	cf := fmt.Sprintf(`{"auths":{%q:{"username":"acme-bot","password":"token","auth":%q}}}`, m[1], auth)
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, []byte(cf), 0o600); err != nil {
		t.Fatal(err)
	}
	u.DockerConfig = path
	if _, err := upstream.New(u, func(p string) string { return p }); err != nil {
		t.Errorf("upstream %s (%s) with the Secret docs/deploy.md creates (--docker-server=%s): %v", u.Name, u.URL, m[1], err)
	}
}
