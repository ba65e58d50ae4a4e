package release_test

import (
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sort"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/sigstore/sigstore-go/pkg/sign"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/pullgate/pullgate/verify"
	"github.com/pullgate/pullgate/verify/attest"
	"github.com/pullgate/pullgate/verify/attest/attesttest"
	"github.com/pullgate/pullgate/verify/release"
)

func signWith(stmt []byte, key crypto.Signer) ([]byte, error) {
	return attest.Sign(context.Background(), stmt, attest.SignOptions{Signer: key})
}

// rawSign signs with sigstore-go directly, skipping attest.Sign's predicate
// validation (another tool holding the trusted key could sign anything).
func rawSign(stmt []byte, key crypto.Signer) ([]byte, error) {
	kp, err := attest.NewKeypair(key)
	if err != nil {
		return nil, err
	}
	pb, err := sign.Bundle(&sign.DSSEData{Data: stmt, PayloadType: attest.PayloadType}, kp, sign.BundleOptions{})
	if err != nil {
		return nil, err
	}
	return protojson.Marshal(pb)
}

func layerOf(l []release.Layer, title string) (int, release.Layer) {
	for i, x := range l {
		if x.Title == title {
			return i, x
		}
	}
	panic("no layer " + title)
}

func mbomCases() []tamper {
	mb := func(e *env) string { return e.digest(attest.KindMBOM) }
	check := func(e *env, l []release.Layer, ts map[string][]attest.Tensor) release.Report {
		return release.CheckMBOM(e.set(), l, release.MBOMOptions{Tensors: ts})
	}
	return []tamper{
		{name: "mbom: extra layer (backdoor adapter added)", run: func(e *env) (release.Report, string, string) {
			l := append(e.layers(), release.Layer{Digest: sha([]byte("evil")), Size: 4, Title: "adapter.safetensors"})
			return check(e, l, e.tensors()), release.CodeExtraFile,
				"mbom: layer adapter.safetensors (" + sha([]byte("evil")) + ") is not listed in MBOM " + mb(e)
		}},
		{name: "mbom: file missing", run: func(e *env) (release.Report, string, string) {
			l := e.layers()
			i, x := layerOf(l, "tokenizer.json")
			l = append(l[:i], l[i+1:]...)
			return check(e, l, e.tensors()), release.CodeMissingFile,
				"mbom: file tokenizer.json (" + x.Digest + ") listed by MBOM " + mb(e) + " is not served by any layer"
		}},
		{name: "mbom: layer digest differs (weights swapped)", run: func(e *env) (release.Report, string, string) {
			l := e.layers()
			i, x := layerOf(l, "shard-000.bin")
			l[i].Digest = sha([]byte("backdoored weights"))
			return check(e, l, e.tensors()), release.CodeDigestMismatch,
				"mbom: file shard-000.bin is served as " + l[i].Digest + ", but MBOM " + mb(e) + " records " + x.Digest
		}},
		{name: "mbom: layer size differs", run: func(e *env) (release.Report, string, string) {
			l := e.layers()
			i, x := layerOf(l, "tokenizer.json")
			l[i].Size++
			return check(e, l, e.tensors()), release.CodeSizeMismatch,
				"mbom: file tokenizer.json is served with size " + itoa(x.Size+1) + ", but MBOM " + mb(e) + " records " + itoa(x.Size)
		}},
		{name: "mbom: tensor shape changed", run: func(e *env) (release.Report, string, string) {
			ts := e.tensors()
			ts["model.safetensors"][0].Shape = []int64{4, 9}
			return check(e, e.layers(), ts), release.CodeTensorMismatch,
				`mbom: file model.safetensors: tensor "lm_head.weight" has shape [4 9], MBOM ` + mb(e) + " expects [4 8]"
		}},
		{name: "mbom: tensor shape changed (blob-time check)", run: func(e *env) (release.Report, string, string) {
			ts := e.tensors()["model.safetensors"]
			if r := release.CheckMBOMTensors(e.set(), "model.safetensors", ts, release.MBOMOptions{}); !r.OK {
				e.t.Fatalf("unchanged tensors: %v", r.Err())
			}
			ts[1].Shape = []int64{8, 5}
			return release.CheckMBOMTensors(e.set(), "model.safetensors", ts, release.MBOMOptions{}), release.CodeTensorMismatch,
				`mbom: file model.safetensors: tensor "model.embed.weight" has shape [8 5], MBOM ` + mb(e) + " expects [8 4]"
		}},
		{name: "mbom: tensor renamed", run: func(e *env) (release.Report, string, string) {
			ts := e.tensors()
			ts["model.safetensors"][1].Name = "model.embed.weight_trigger"
			return check(e, e.layers(), ts), release.CodeTensorMismatch,
				`mbom: file model.safetensors: tensor "model.embed.weight" expected by MBOM ` + mb(e) + " is missing"
		}},
		{name: "mbom: extra tensor", run: func(e *env) (release.Report, string, string) {
			ts := e.tensors()
			ts["model.safetensors"] = append(ts["model.safetensors"], attest.Tensor{Name: "payload", DType: "U8", Shape: []int64{16}})
			return check(e, e.layers(), ts), release.CodeTensorMismatch,
				`mbom: file model.safetensors: tensor "payload" is not in MBOM ` + mb(e)
		}},
		{name: "mbom: tensor dtype changed", run: func(e *env) (release.Report, string, string) {
			ts := e.tensors()
			ts["model.safetensors"][0].DType = "F16"
			return check(e, e.layers(), ts), release.CodeTensorMismatch,
				`mbom: file model.safetensors: tensor "lm_head.weight" has dtype F16, MBOM ` + mb(e) + " expects F32"
		}},
		{name: "mbom: tensors required but not inspected", run: func(e *env) (release.Report, string, string) {
			return release.CheckMBOM(e.set(), e.layers(), release.MBOMOptions{RequireTensors: true}), release.CodeMissingTensors,
				"mbom: file model.safetensors: MBOM " + mb(e) + " expects 2 tensors but no tensor information was inspected"
		}},
		{name: "mbom: untitled layer", run: func(e *env) (release.Report, string, string) {
			l := append(e.layers(), release.Layer{Digest: sha([]byte("x")), Size: 1})
			return check(e, l, e.tensors()), release.CodeUntitled,
				"mbom: layer " + sha([]byte("x")) + " has no org.opencontainers.image.title annotation, so no file can account for it"
		}},
		{name: "mbom: two layers claim one file", run: func(e *env) (release.Report, string, string) {
			l := e.layers()
			_, x := layerOf(l, "tokenizer.json")
			l = append(l, release.Layer{Digest: sha([]byte("y")), Size: 1, Title: x.Title})
			return check(e, l, e.tensors()), release.CodeDuplicateTitle, `mbom: two layers are titled "tokenizer.json"`
		}},
		{name: "mbom: replayed from another artifact", run: func(e *env) (release.Report, string, string) {
			return release.CheckMBOM(e.set(), e.layers(), release.MBOMOptions{Subject: digest.Digest("sha256:" + strings.Repeat("4", 64))}), release.CodeNoEvidence,
				"mbom: no verified MBOM statement (https://pullgate.dev/attestation/mbom/v1) for the served digest"
		}},
		{name: "mbom: none verified (signed by an untrusted key)", run: func(e *env) (release.Report, string, string) {
			atts := e.without(attest.KindMBOM)
			if a, ok := e.verified(e.r.Statements[attest.KindMBOM], e.attacker); ok {
				atts = append(atts, a)
			}
			return release.CheckMBOM(atts, e.layers(), release.MBOMOptions{}), release.CodeNoEvidence,
				"mbom: no verified MBOM statement (https://pullgate.dev/attestation/mbom/v1) for the served digest"
		}},
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

// omsStatement builds an OpenSSF model signing statement over files, as
// model_signing does: resources sorted by name, subject = root digest.
func omsStatement(files map[string][]byte, mutate func(pred map[string]any)) []byte {
	var names []string
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var res []any
	h := sha256.New()
	for _, n := range names {
		s := sha256.Sum256(files[n])
		h.Write(s[:])
		res = append(res, map[string]any{"name": n, "digest": hex.EncodeToString(s[:]), "algorithm": "sha256"})
	}
	pred := map[string]any{
		"resources": res,
		"serialization": map[string]any{"method": "files", "hash_type": "sha256", "allow_symlinks": false,
			"ignore_paths": []string{".git", ".gitignore", ".gitattributes", ".github"}},
	}
	root := hex.EncodeToString(h.Sum(nil))
	if mutate != nil {
		mutate(pred)
		if r, ok := pred["__root"].(string); ok {
			root = r
			delete(pred, "__root")
		}
	}
	b, _ := json.Marshal(map[string]any{
		"_type":         attest.StatementTypeV1,
		"subject":       []any{map[string]any{"name": "model", "digest": map[string]string{"sha256": root}}},
		"predicateType": attest.OpenSSFModelSigningType,
		"predicate":     pred,
	})
	return b
}

func (e *env) oms(mutate func(map[string]any)) verify.Attestation {
	e.t.Helper()
	st := omsStatement(e.r.Model, mutate)
	ps, err := attest.ParseStatement(st)
	if err != nil {
		e.t.Fatal(err)
	}
	b, err := signWith(st, e.ci)
	if err != nil {
		e.t.Fatal(err)
	}
	a, err := attesttest.Verify(b, map[string]crypto.PublicKey{"ci": e.ci.Public()}, digest.Digest("sha256:"+ps.Subject[0].Digest["sha256"]))
	if err != nil {
		e.t.Fatal(err)
	}
	return *a
}

func TestOpenSSFHappyPath(t *testing.T) {
	e := newEnv(t, attesttest.ReleaseOptions{})
	a := e.oms(nil)
	if r := release.CheckOpenSSF([]verify.Attestation{a}, e.layers(), release.OpenSSFOptions{}); !r.OK {
		t.Fatal(r.Err())
	}
	// Ignored paths do not need to be signed.
	l := append(e.layers(), release.Layer{Digest: sha([]byte("git")), Size: 3, Title: ".git/config"})
	if r := release.CheckOpenSSF([]verify.Attestation{a}, l, release.OpenSSFOptions{}); !r.OK {
		t.Fatal(r.Err())
	}
	// Extra layers pass only with IgnoreUnsigned.
	l = append(e.layers(), release.Layer{Digest: sha([]byte("z")), Size: 1, Title: "readme.md"})
	if r := release.CheckOpenSSF([]verify.Attestation{a}, l, release.OpenSSFOptions{IgnoreUnsigned: true}); !r.OK {
		t.Fatal(r.Err())
	}
}

func openSSFCases() []tamper {
	check := func(e *env, a verify.Attestation, l []release.Layer) release.Report {
		return release.CheckOpenSSF([]verify.Attestation{a}, l, release.OpenSSFOptions{})
	}
	return []tamper{
		{name: "openssf: layer digest differs from the signed file digest", run: func(e *env) (release.Report, string, string) {
			a := e.oms(nil)
			l := e.layers()
			i, x := layerOf(l, "model.safetensors")
			l[i].Digest = sha([]byte("other weights"))
			return check(e, a, l), release.CodeDigestMismatch,
				"openssf-model-signing: file model.safetensors is served as " + l[i].Digest + ", but " + a.Statement.String() + " signed " + x.Digest
		}},
		{name: "openssf: unsigned extra layer", run: func(e *env) (release.Report, string, string) {
			a := e.oms(nil)
			l := append(e.layers(), release.Layer{Digest: sha([]byte("lora")), Size: 4, Title: "adapter/lora.bin"})
			return check(e, a, l), release.CodeExtraFile,
				"openssf-model-signing: layer adapter/lora.bin (" + sha([]byte("lora")) + ") is not signed by " + a.Statement.String()
		}},
		{name: "openssf: signed file not served", run: func(e *env) (release.Report, string, string) {
			a := e.oms(nil)
			l := e.layers()
			i, _ := layerOf(l, "tokenizer.json")
			l = append(l[:i], l[i+1:]...)
			return check(e, a, l), release.CodeMissingFile,
				"openssf-model-signing: file tokenizer.json signed by " + a.Statement.String() + " is not served by any layer"
		}},
		{name: "openssf: subject is not the root digest of the resources", run: func(e *env) (release.Report, string, string) {
			bogus := strings.Repeat("9", 64)
			a := e.oms(func(p map[string]any) { p["__root"] = bogus })
			real := omsRoot(e)
			return check(e, a, e.layers()), release.CodeRootDigest,
				`openssf-model-signing: statement ` + a.Statement.String() + `: subject sha256 "` + bogus + `" is not the root digest ` + real + " of its resources"
		}},
		{name: "openssf: blake3 digests cannot be compared with layers", run: func(e *env) (release.Report, string, string) {
			a := e.oms(func(p map[string]any) {
				p["serialization"].(map[string]any)["hash_type"] = "blake3"
				for _, r := range p["resources"].([]any) {
					r.(map[string]any)["algorithm"] = "blake3"
				}
			})
			return check(e, a, e.layers()), release.CodeUnsupported,
				"openssf-model-signing: statement " + a.Statement.String() + ": hash_type blake3 cannot be compared with OCI layer digests (sha256)"
		}},
		{name: "openssf: malformed predicate (algorithm differs from hash_type)", run: func(e *env) (release.Report, string, string) {
			a := e.oms(func(p map[string]any) { p["resources"].([]any)[0].(map[string]any)["algorithm"] = "sha512" })
			return check(e, a, e.layers()), release.CodeMalformed,
				`openssf-model-signing: statement ` + a.Statement.String() + `: resources: model.safetensors uses algorithm "sha512", serialization.hash_type is "sha256"`
		}},
	}
}

func omsRoot(e *env) string {
	var s struct {
		Subject []attest.Subject `json:"subject"`
	}
	json.Unmarshal(omsStatement(e.r.Model, nil), &s)
	return s.Subject[0].Digest["sha256"]
}
