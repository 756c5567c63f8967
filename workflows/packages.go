package workflows

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/kiln-build/kiln/workflows/flavour"
)

// ActivityCheckPackages is the name of the activity that checks that a
// package version exists (activities/packages). Workflows refer to it by
// name: that package imports this one.
const ActivityCheckPackages = "CheckPackages"

// Error types of a failed packages check.
const (
	// ErrTypePackagesNotFound: the request's packages version does not
	// exist where packages.check looks (404, a Release file of another
	// version, no such S3 key). The message names the version and what
	// was checked.
	ErrTypePackagesNotFound = "PackagesNotFound"
	// ErrTypePackagesCheckFailed: the check could not tell (access
	// refused, a body that is no Release file, no answer within the
	// check's window). The message names the version and what was
	// checked.
	ErrTypePackagesCheckFailed = "PackagesCheckFailed"
)

// PackagesCheck is how a build run with BuildRequest.PackagesVersion checks
// that the version exists before it skips the packages phase (config:
// packages.check). Exactly one of URL and S3Key is set. Both are
// text/template templates over TemplateData, such as
// "https://packages.gardenlinux.io/gardenlinux/dists/{{.PackagesVersion}}/InRelease".
// They are recorded in the workflow history: they must hold no secret.
type PackagesCheck struct {
	// URL is the apt repository's Release or InRelease file. The check
	// passes when a GET answers 200 with a Release file (clearsigned or
	// not; the signature is not verified) whose Codename or Suite is the
	// version, as apt matches a sources.list distribution. It fails on
	// 404 or 410, or another version's file.
	URL string `json:"url,omitempty"`
	// S3Key is an object in Bucket that exists when the version does,
	// such as "gardenlinux/dists/{{.PackagesVersion}}/InRelease"; the
	// check is a HeadObject with the storage's S3 client. The whole key:
	// storage.prefix is not added.
	S3Key string `json:"s3Key,omitempty"`
	// Bucket holds S3Key. Optional: storage.releaseBucket.
	Bucket string `json:"bucket,omitempty"`
}

// Validate checks c's fields and templates, naming them under path
// ("packages.check"). It reports every problem at once.
func (c PackagesCheck) Validate(path string) error {
	var errs []error
	if (c.URL == "") == (c.S3Key == "") {
		errs = append(errs, fmt.Errorf("%s: exactly one of url and s3Key is required: url for the apt repository's Release file, s3Key for an object in the storage bucket", path))
	}
	if c.URL != "" && c.Bucket != "" {
		errs = append(errs, fmt.Errorf("%s.bucket: only for s3Key; drop it, or check an s3Key instead of the url", path))
	}
	d := sampleData()
	for _, f := range []struct{ name, tmpl string }{{"url", c.URL}, {"s3Key", c.S3Key}} {
		if f.tmpl == "" {
			continue
		}
		m, err := render(path, map[string]string{f.name: f.tmpl}, d)
		switch {
		case err != nil:
			errs = append(errs, err)
		case f.name == "url":
			if err := checkURL(m[f.name]); err != nil {
				errs = append(errs, fmt.Errorf("%s.url: %v", path, err))
			}
		case m[f.name] == "":
			errs = append(errs, fmt.Errorf("%s.s3Key: %q renders to an empty key", path, c.S3Key))
		}
	}
	return errors.Join(errs...)
}

// checkURL checks a rendered check URL; its errors show the URL without
// a password.
func checkURL(s string) error {
	u, err := url.Parse(s)
	var ue *url.Error
	switch {
	case errors.As(err, &ue):
		return fmt.Errorf("not a URL: %v", ue.Err) // its message would show a password
	case err != nil:
		return err
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%s: want an http or https URL", u.Redacted())
	case u.Host == "":
		return fmt.Errorf("%s: no host", u.Redacted())
	case u.User != nil:
		return fmt.Errorf("%s: holds credentials, which the workflow history would record; serve the Release file without them", u.Redacted())
	}
	return nil
}

// request renders c for version v over d.
func (c PackagesCheck) request(v string, d TemplateData) (PackagesCheckRequest, error) {
	d.PackagesVersion = v
	m, err := render("packages.check", map[string]string{"url": c.URL, "s3Key": c.S3Key}, d)
	if err != nil {
		return PackagesCheckRequest{}, err
	}
	in := PackagesCheckRequest{Version: v, URL: m["url"]}
	if c.S3Key != "" {
		in.Bucket, in.Key = c.Bucket, m["s3Key"]
		if in.Key == "" {
			return in, fmt.Errorf("s3Key: %q renders to an empty key", c.S3Key)
		}
	}
	return in, nil
}

// PackagesCheckRequest is the input of the CheckPackages activity: the
// version and where it is looked for, rendered. Exactly one of URL and Key
// is set.
type PackagesCheckRequest struct {
	Version string `json:"version"`
	URL     string `json:"url,omitempty"`
	Bucket  string `json:"bucket,omitempty"`
	Key     string `json:"key,omitempty"`
}

// PackagesCheckResult is what the CheckPackages activity found.
type PackagesCheckResult struct {
	// Checked says what answered, for the packages phase's progress:
	// "GET https://…/InRelease answered 200, Codename 1443.0".
	Checked string `json:"checked"`
}

// checkPackages runs the plan's packages check for the request's packages
// version and returns the packages phase's reason for being skipped. A
// version that the check does not find fails the build, naming the version
// and what was checked, before any phase runs. Without a check, nothing is
// checked and the reason says so. A check that gets no answer is retried
// for window.
func (b *build) checkPackages(ctx workflow.Context, window time.Duration) (string, error) {
	v := b.in.PackagesVersion
	c := b.plan.PackagesCheck
	if c == nil {
		return "packages " + v + ": not checked (config: packages.check)", nil
	}
	st := b.state(PhasePackages)
	fail := func(errType, msg string) (string, error) {
		st.State, st.Reason, st.Error = StateFailed, "", msg
		return "", temporal.NewNonRetryableApplicationError(msg, errType, nil)
	}
	in, err := c.request(v, b.data(flavour.Flavour{}, ""))
	if err != nil {
		return fail(ErrTypePackagesCheckFailed, fmt.Sprintf("packages %s: %v", v, err))
	}
	st.State, st.Reason = StateRunning, "checking that packages "+v+" exist"
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute, ScheduleToCloseTimeout: window,
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: time.Minute},
	})
	var res PackagesCheckResult
	if err := workflow.ExecuteActivity(actx, ActivityCheckPackages, in).Get(ctx, &res); err != nil {
		if temporal.IsCanceledError(err) {
			st.State, st.Reason = StateCancelled, ""
			return "", err
		}
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) && appErr.NonRetryable() {
			return fail(appErr.Type(), appErr.Message())
		}
		if errors.As(err, &appErr) { // the last attempt's error names v and where
			return fail(ErrTypePackagesCheckFailed, fmt.Sprintf("%s; still so after %v of retries", appErr.Message(), window))
		}
		where := in.URL
		if where == "" {
			where = "s3://" + in.Bucket + "/" + in.Key
		}
		return fail(ErrTypePackagesCheckFailed, fmt.Sprintf("packages %s: %s gave no answer within %v: %v", v, where, window, err))
	}
	return "packages " + v + " exist: " + res.Checked, nil
}
