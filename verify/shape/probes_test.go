package shape

import "testing"

func TestShapeProbes(t *testing.T) {
	for _, c := range []struct{ mt, b string }{
		{InToto, `{"_type":"x","subject":[1],"predicateType":"y","auto_map":{"AutoModel":"e.M"}}`},
		{InToto, `{"_type":"x","subject":[1],"predicateType":"y","\u0061uto_map":{"AutoModel":"e.M"}}`},
		{InToto, `{"_type":"x","subject":[1],"predicateType":"y","_type":"z"}`},
		{InToto, `{"_type":"x","subject":[1],"predicateType":"y","\u005ftype":"z"}`},
		{InToto, `{"_type":"x","subject":[1],"predicateType":"y","chat_template":"{{x}}"}`},
		{InToto, `{"_type":"x","subject":[1],"predicateType":"y","predicate":NaN}`},
		{InToto, "\ufeff" + `{"_type":"x","subject":[1],"predicateType":"y"}`},
		{InToto, `{"_type":"x","subject":[1],"predicateType":"y"} {"auto_map":1}`},
		{"application/vnd.oci.image.config.v1+json", `{"architectures":["X"],"auto_map":{}}`},
		{"application/vnd.oci.image.config.v1+json", `{"Architecture":"x"}`},
		{SimpleSigning, `{"critical":{"image":{"docker-manifest-digest":"d"},"type":"t","auto_map":1}}`},
		{DSSEEnvelope, `{"payloadType":"x","payload":"eA==","signatures":[{"sig":"x","auto_map":1}]}`},
	} {
		if err := Check(c.mt, []byte(c.b)); err == nil {
			t.Errorf("accepted %s: %s", c.mt, c.b)
		}
	}
}
