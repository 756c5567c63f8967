package storage

import (
	"context"
	"encoding/json"
)

// ManifestSet lists the manifests of one build's flavours.
type ManifestSet struct {
	SchemaVersion int    `json:"schemaVersion"`
	BuildID       string `json:"buildId"`
	Commit        string `json:"commit"`
	Version       string `json:"version"`
	// Manifests maps each flavour to its manifest's key.
	Manifests map[string]string `json:"manifests"`
}

// ManifestSetKey is a build's manifest set key.
func ManifestSetKey(prefix, version, commit string) string {
	return prefix + "meta/sets/" + version + "-" + commit
}

// PutManifestSet writes a build's manifest set, replacing one written
// before for the same version and commit (a re-run lists the same
// manifests, and more when flavours were added). It returns the key.
func (a *Activities) PutManifestSet(ctx context.Context, set ManifestSet) (string, error) {
	set.SchemaVersion = ManifestSchemaVersion
	key := ManifestSetKey(a.cfg.Prefix, set.Version, set.Commit)
	b, err := json.MarshalIndent(set, "", "  ")
	if err != nil {
		return "", err
	}
	if err := a.put(ctx, key, b, "application/json", nil); err != nil {
		return "", classify("put "+key, err)
	}
	return key, nil
}
