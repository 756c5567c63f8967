package worker

import (
	"errors"

	"github.com/kiln-build/kiln/workflows"
)

// Packages configures what builds know of package versions.
type Packages struct {
	// Check is how a build run with --packages-version checks that the
	// version exists before it skips the packages phase: url, the apt
	// repository's Release (or InRelease) file, or s3Key, an object in
	// bucket (default storage.releaseBucket). Exactly one of url and
	// s3Key; both are templates over the build, such as
	// "https://packages.gardenlinux.io/gardenlinux/dists/{{.PackagesVersion}}/InRelease".
	Check *workflows.PackagesCheck `json:"check,omitempty"`
}

// packagesPlan adds the packages check to p, reporting problems in errs.
func (c Config) packagesPlan(p *workflows.Plan) []error {
	if c.Packages == nil || c.Packages.Check == nil {
		return nil
	}
	check := *c.Packages.Check
	var errs []error
	if err := check.Validate("packages.check"); err != nil {
		errs = append(errs, err)
	}
	if check.S3Key != "" {
		if c.Storage == nil {
			errs = append(errs, errors.New("packages.check.s3Key: needs storage: the key is looked up with the storage's S3 client; configure storage, or check a url instead"))
		} else if check.Bucket == "" {
			check.Bucket = c.Storage.ReleaseBucket
		}
	}
	p.PackagesCheck = &check
	return errs
}
