package tekton

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
)

// Labels and annotations kiln puts on every PipelineRun it creates. Tekton
// copies the labels to the run's TaskRuns and Pods.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedByValue = "kiln"
	// LabelKey holds the first 16 hex characters of SHA-256(request key).
	LabelKey = "kiln.dev/key"
	// LabelSpec holds the first 16 hex characters of SHA-256 of the request.
	LabelSpec = "kiln.dev/spec"
	// AnnotationKey holds the request key in full.
	AnnotationKey = "kiln.dev/key"
	// ManagedSelector selects the runs kiln manages; the Watcher lists and
	// watches only these.
	ManagedSelector = LabelManagedBy + "=" + ManagedByValue
)

const (
	namePrefixMax = 30
	nameHashLen   = 8
	// NameMaxLen is the longest name RunName returns.
	NameMaxLen = namePrefixMax + 1 + nameHashLen
)

// RunName returns the PipelineRun name for a request key: a readable,
// DNS-1123 prefix of the key of at most 30 characters, a dash, and 8 hex
// characters of SHA-256(key). Distinct keys that share a prefix still get
// distinct names.
func RunName(key string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(key) {
		if b.Len() == namePrefixMax {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
			dash = false
		case !dash && b.Len() > 0:
			b.WriteByte('-')
			dash = true
		}
	}
	prefix := strings.TrimRight(b.String(), "-")
	if prefix == "" {
		prefix = "kiln"
	}
	return prefix + "-" + hashHex(key)[:nameHashLen]
}

func hashHex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// keyLabel is the LabelKey value for a key.
func keyLabel(key string) string { return hashHex(key)[:16] }

// specLabel is the LabelSpec value for a request: a hash of its JSON form,
// which encoding/json makes deterministic (struct order, sorted map keys).
func specLabel(in PipelineRunRequest) (string, error) {
	b, err := json.Marshal(in)
	if err != nil {
		return "", err
	}
	return hashHex(string(b))[:16], nil
}
