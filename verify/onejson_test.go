package verify_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/verify"
	"github.com/pullgate/pullgate/verify/cosign"
	"github.com/pullgate/pullgate/verify/shape"
)

// TestSignedJSONReadOneWay: evidence signed by the trusted key whose JSON
// can be read two ways (a repeated key, a key differing from a field only
// in case, invalid UTF-8, a lone surrogate, trailing data) is malformed,
// never a signature or attestation; and the proxy's serving check
// (verify/shape) refuses exactly the blobs the decision refuses, and
// serves exactly those it reads.
func TestSignedJSONReadOneWay(t *testing.T) {
	reg := startUpstream(t, true)
	release := newKey(t, "release", "p256")
	trust := mustTrust(t, verify.TrustSpec{Keys: []verify.KeySpec{release.spec()}})
	repo := "onejson/app"
	// simple builds a simple-signing payload for d with the critical
	// section's members in order, as cosign writes them.
	simple := func(d digest.Digest) string { return string(simpleSigningPayload(d, "r.example/app")) }
	stmt := func(d digest.Digest) string {
		return string(statementJSON("https://in-toto.io/Statement/v1", slsa02, `{"builder":{"id":"https://ci.example/builder"}}`, d))
	}
	type evidence struct {
		mediaType string
		blob      []byte
		layer     layerSpec
		bundle    bool
	}
	sig := func(payload string) evidence {
		l := sigLayer(t, release, []byte(payload))
		return evidence{cosign.SimpleSigningMediaType, l.blob, l, false}
	}
	att := func(statement string) evidence {
		env := envelopeJSON(t, release, "application/vnd.in-toto+json", []byte(statement))
		return evidence{cosign.DSSEMediaType, env, attLayer(env), false}
	}
	bundleOf := func(statement string) evidence {
		return evidence{cosign.BundleMediaType, keyBundleJSON(t, release, []byte(statement)), layerSpec{}, true}
	}
	cases := []struct {
		name   string
		make   func(img, other digest.Digest) evidence
		reason string // "" = the evidence counts
	}{
		{"control: simple-signing", func(img, _ digest.Digest) evidence { return sig(simple(img)) }, ""},
		{"control: DSSE attestation", func(img, _ digest.Digest) evidence { return att(stmt(img)) }, ""},
		{"control: bundle", func(img, _ digest.Digest) evidence { return bundleOf(stmt(img)) }, ""},
		{"repeated critical, the last naming the image", func(img, other digest.Digest) evidence {
			first := strings.TrimSuffix(strings.TrimPrefix(simple(other), `{"critical":`), `,"optional":null}`)
			return sig(`{"critical":` + first + `,` + strings.TrimPrefix(simple(img), "{"))
		}, `duplicate key "critical" at $`},
		{"Critical", func(img, _ digest.Digest) evidence {
			return sig(strings.Replace(simple(img), `"critical"`, `"Critical"`, 1))
		}, `key "Critical" differs from the field "critical" only in case`},
		{"docker-manifest-Digest", func(img, _ digest.Digest) evidence {
			return sig(strings.Replace(simple(img), "docker-manifest-digest", "docker-manifest-Digest", 1))
		}, `key "docker-manifest-Digest" differs from the field "docker-manifest-digest" only in case at $.critical.image`},
		{"member critical does not define", func(img, _ digest.Digest) evidence {
			return sig(strings.Replace(simple(img), `"type":`, `"expires":0,"type":`, 1))
		}, `unknown field "expires" at $.critical`},
		{"invalid UTF-8", func(img, _ digest.Digest) evidence {
			return sig(strings.Replace(simple(img), "r.example/app", "r.example/app\xff", 1))
		}, "invalid UTF-8"},
		{"lone surrogate", func(img, _ digest.Digest) evidence {
			return sig(strings.Replace(simple(img), `"optional":null`, `"optional":{"by":"\ud800"}`, 1))
		}, "lone high surrogate at $.optional.by"},
		{"trailing bracket", func(img, _ digest.Digest) evidence { return sig(simple(img) + "]") }, "data after the JSON value"},
		{"statement subject digest repeated", func(img, other digest.Digest) evidence {
			return att(strings.Replace(stmt(img), `"digest":{`, fmt.Sprintf(`"digest":{"sha256":%q,`, other.Encoded()), 1))
		}, `duplicate key "sha256" at $.subject[0].digest`},
		{"statement Subject", func(img, _ digest.Digest) evidence {
			return att(strings.Replace(stmt(img), `"subject"`, `"Subject"`, 1))
		}, `key "Subject" differs from the field "subject" only in case`},
		{"predicate builder.id repeated", func(img, _ digest.Digest) evidence {
			return att(strings.Replace(stmt(img), `"id":`, `"id":"https://evil.example","id":`, 1))
		}, `duplicate key "id" at $.predicate.builder`},
		{"envelope payload repeated", func(img, other digest.Digest) evidence {
			e := att(stmt(img))
			forged := base64.StdEncoding.EncodeToString([]byte(stmt(other)))
			e.blob = []byte(strings.Replace(string(e.blob), `"payload":`, `"payload":"`+forged+`","payload":`, 1))
			e.layer = attLayer(e.blob)
			return e
		}, `duplicate key "payload"`},
		{"bundle statement predicate repeated", func(img, _ digest.Digest) evidence {
			return bundleOf(strings.Replace(stmt(img), `"predicate":{`, `"predicate":{"builder":{},`, 1))
		}, `duplicate key "builder" at $.predicate`},
		{"bundle key repeated", func(img, _ digest.Digest) evidence {
			e := bundleOf(stmt(img))
			e.blob = []byte(strings.Replace(string(e.blob), `"mediaType":`, `"mediaType":"x","mediaType":`, 1))
			return e
		}, `duplicate key "mediaType"`},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img := pushImage(t, reg, repo, fmt.Sprintf("c%d", i))
			other := pushImage(t, reg, repo, fmt.Sprintf("o%d", i))
			ev := c.make(img.Digest, other.Digest)
			switch {
			case ev.bundle:
				pushBundle(t, reg, repo, img, ev.blob, false)
			case ev.mediaType == cosign.SimpleSigningMediaType:
				pushLegacy(t, reg, repo, img.Digest, "sig", ev.layer)
			default:
				pushLegacy(t, reg, repo, img.Digest, "att", ev.layer)
			}
			res := verify.Collect(context.Background(), newFetcher(t, reg, repo), img.Digest, trust, verify.CollectOptions{})
			serr := shape.Check(ev.mediaType, ev.blob)
			if c.reason == "" {
				if len(res.Signatures)+len(res.Attestations) != 1 || len(res.Failures) != 0 {
					t.Fatalf("control did not count: %s", summarize(res))
				}
				if serr != nil {
					t.Fatalf("the proxy would not serve evidence the verifier counted: %v", serr)
				}
				return
			}
			if len(res.Signatures) != 0 || len(res.Attestations) != 0 {
				t.Fatalf("evidence readable two ways counted: %s", summarize(res))
			}
			if len(res.Failures) != 1 || res.Failures[0].Kind != verify.FailMalformed || !strings.Contains(res.Failures[0].Reason, c.reason) {
				t.Fatalf("want one malformed failure containing %q, got %s", c.reason, summarize(res))
			}
			if serr == nil {
				t.Fatalf("the proxy would serve evidence the verifier refused")
			}
			if !strings.Contains(serr.Error(), c.reason) && !ev.bundle {
				t.Errorf("serving refused for another reason than deciding: %v", serr)
			}
		})
	}
}

// TestPredicateValueReadOneWay: the predicate a policy condition reads is
// decoded as strictly as the statement it came in.
func TestPredicateValueReadOneWay(t *testing.T) {
	a := verify.Attestation{Predicate: json.RawMessage(`{"builder":{"id":"a","id":"b"}}`)}
	if _, err := a.PredicateValue(); err == nil || !strings.Contains(err.Error(), `duplicate key "id"`) {
		t.Fatalf("PredicateValue: %v", err)
	}
}
