package webhook

import (
	"bytes"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

// FuzzVerify: only the signature of the exact body passes (its hex in
// either case, as hex decoding allows).
func FuzzVerify(f *testing.F) {
	f.Add([]byte("Hello, World!"), "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
	f.Add([]byte(""), "")
	f.Add([]byte("x"), "sha256=zz")
	f.Fuzz(func(t *testing.T, body []byte, header string) {
		err := Verify(secret, body, header)
		want := Sign(secret, body)
		valid := strings.HasPrefix(header, "sha256=") && strings.EqualFold(header[len("sha256="):], want[len("sha256="):])
		if (err == nil) != valid {
			t.Fatalf("Verify(%q, %q) = %v", body, header, err)
		}
	})
}

// FuzzDelivery: any signed body gets a defined answer and never panics; a
// 202 only for a push that parses.
func FuzzDelivery(f *testing.F) {
	for _, name := range []string{"push-branch.json", "push-tag.json", "push-deleted.json", "ping.json"} {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"ref":"refs/heads/main","after":"` + string(bytes.Repeat([]byte("a"), 40)) + `","repository":{"clone_url":"x"}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		s := &fakeStarter{}
		h := handler(s, &bytes.Buffer{})
		r := httptest.NewRequest("POST", "/", bytes.NewReader(body))
		r.Header.Set("X-Hub-Signature-256", Sign(secret, body))
		r.Header.Set("X-GitHub-Event", "push")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		switch w.Code {
		case 202:
			if _, err := ParsePush(body); err != nil || len(s.got) != 1 {
				t.Fatalf("202 for %q", body)
			}
			if err := s.got[0].Validate(); err != nil {
				t.Fatalf("202 with an invalid request %+v: %v", s.got[0], err)
			}
		case 204, 400, 413:
			if len(s.got) != 0 {
				t.Fatalf("%d but started a build", w.Code)
			}
		default:
			t.Fatalf("status %d for %q", w.Code, body)
		}
	})
}
