// Package packages holds the CheckPackages activity: before a build that
// names an existing package version (kiln run --packages-version) skips
// its packages phase, it checks that the version exists, as the worker's
// packages.check says. Either it reads the apt repository's Release file
// for the version over HTTP(S), as apt would, or it looks for an object in
// the storage's S3 bucket, as Garden Linux's own repository pipeline does
// (gardenlinux/repo's build workflow asks head-object for
// gardenlinux/dists/<version>/InRelease before it creates a distribution).
package packages

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"go.temporal.io/sdk/temporal"

	"github.com/kiln-build/kiln/workflows"
)

// MaxReleaseSize bounds the Release file read: Debian's own InRelease is
// about 200 KB.
const MaxReleaseSize = 16 << 20

// Activities check package versions. They are read-only, so any retry is
// safe.
type Activities struct {
	http *http.Client
	s3   *s3.Client
}

// New returns the activities for an HTTP client and the storage's S3 client
// (nil without storage: then only URL checks work).
func New(httpClient *http.Client, s3Client *s3.Client) *Activities {
	if httpClient == nil {
		httpClient = http.DefaultClient
	}
	return &Activities{http: httpClient, s3: s3Client}
}

// CheckPackages checks that in.Version exists: at in.URL, a Release file
// whose Codename or Suite is the version, or the object in.Key in
// in.Bucket. It returns what answered, for the build's progress.
//
// It returns a non-retryable error of type workflows.ErrTypePackagesNotFound
// when the version does not exist (HTTP 404 or 410, another version's
// Release file, no such key), and of type
// workflows.ErrTypePackagesCheckFailed when no retry can tell (another 4xx
// than 408 and 429, a body that is no Release file, refused access, no
// such bucket). Every other error, such as a server that cannot be reached
// or answers 5xx, is retryable. Each message names the version and what
// was checked.
func (a *Activities) CheckPackages(ctx context.Context, in workflows.PackagesCheckRequest) (workflows.PackagesCheckResult, error) {
	switch {
	case in.Version == "":
		return workflows.PackagesCheckResult{}, permanent(workflows.ErrTypePackagesCheckFailed, "packages check: no version")
	case (in.URL == "") == (in.Key == ""):
		return workflows.PackagesCheckResult{}, permanent(workflows.ErrTypePackagesCheckFailed, "packages %s: the check wants exactly one of a URL and an S3 key", in.Version)
	case in.URL != "":
		return a.checkURL(ctx, in.Version, in.URL)
	default:
		return a.checkKey(ctx, in.Version, in.Bucket, in.Key)
	}
}

func (a *Activities) checkURL(ctx context.Context, v, rawURL string) (workflows.PackagesCheckResult, error) {
	var res workflows.PackagesCheckResult
	u, err := url.Parse(rawURL)
	if err != nil {
		return res, permanent(workflows.ErrTypePackagesCheckFailed, "packages %s: url %q: %v", v, rawURL, err)
	}
	shown := u.Redacted()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return res, permanent(workflows.ErrTypePackagesCheckFailed, "packages %s: GET %s: %v", v, shown, err)
	}
	req.Header.Set("User-Agent", "kiln (packages check)")
	resp, err := a.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its message repeats the URL
		}
		return res, fmt.Errorf("packages %s: GET %s: %w", v, shown, err)
	}
	defer resp.Body.Close()
	switch s := resp.StatusCode; {
	case s == http.StatusOK:
	case s == http.StatusNotFound || s == http.StatusGone:
		return res, permanent(workflows.ErrTypePackagesNotFound, "packages %s not found: GET %s answered %d", v, shown, s)
	case s == http.StatusRequestTimeout || s == http.StatusTooManyRequests || s >= 500:
		return res, fmt.Errorf("packages %s: GET %s answered %s", v, shown, resp.Status)
	case s >= 400:
		return res, permanent(workflows.ErrTypePackagesCheckFailed, "packages %s: GET %s answered %s, which no retry changes; check packages.check.url and the server's access", v, shown, resp.Status)
	default:
		return res, fmt.Errorf("packages %s: GET %s answered %s, not 200", v, shown, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxReleaseSize+1))
	if err != nil {
		return res, fmt.Errorf("packages %s: GET %s: reading the body: %w", v, shown, err)
	}
	if len(body) > MaxReleaseSize {
		return res, permanent(workflows.ErrTypePackagesCheckFailed, "packages %s: GET %s answered 200 with more than %d MiB, which is no Release file", v, shown, MaxReleaseSize>>20)
	}
	rel, err := ParseRelease(body)
	if err != nil {
		return res, permanent(workflows.ErrTypePackagesCheckFailed, "packages %s: GET %s answered 200, but the body is no Release file: %v", v, shown, err)
	}
	field := ""
	switch v {
	case rel.Codename:
		field = "Codename"
	case rel.Suite:
		field = "Suite"
	default:
		return res, permanent(workflows.ErrTypePackagesNotFound, "packages %s not found: GET %s answered 200 with the Release file of another distribution (%s); packages.check.url must lead to the version's own dists/<version>/", v, shown, rel.describe())
	}
	res.Checked = fmt.Sprintf("GET %s answered 200, %s %s", shown, field, v)
	return res, nil
}

func (r Release) describe() string {
	var parts []string
	if r.Codename != "" {
		parts = append(parts, "Codename "+r.Codename)
	}
	if r.Suite != "" {
		parts = append(parts, "Suite "+r.Suite)
	}
	return strings.Join(parts, ", ")
}

func (a *Activities) checkKey(ctx context.Context, v, bucket, key string) (workflows.PackagesCheckResult, error) {
	var res workflows.PackagesCheckResult
	uri := "s3://" + bucket + "/" + key
	if a.s3 == nil {
		return res, permanent(workflows.ErrTypePackagesCheckFailed, "packages %s: %s: this worker has no storage (config: storage) to look with", v, uri)
	}
	if bucket == "" {
		return res, permanent(workflows.ErrTypePackagesCheckFailed, "packages %s: key %s: no bucket", v, key)
	}
	out, err := a.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: &key})
	switch status := httpStatus(err); {
	case err == nil:
	case status == http.StatusNotFound || isNotFound(err):
		if _, berr := a.s3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &bucket}); berr != nil && (httpStatus(berr) == http.StatusNotFound || isNotFound(berr)) {
			return res, permanent(workflows.ErrTypePackagesCheckFailed, "packages %s: %s: the bucket %s does not exist; check packages.check.bucket (default: storage.releaseBucket)", v, uri, bucket)
		}
		return res, permanent(workflows.ErrTypePackagesNotFound, "packages %s not found: %s does not exist", v, uri)
	case status == http.StatusForbidden:
		return res, permanent(workflows.ErrTypePackagesCheckFailed, "packages %s: HEAD %s answered 403: the storage's credentials may not read it (S3 also answers 403 for a missing key to those who may not list the bucket)", v, uri)
	default: // unknown errors are retryable
		return res, fmt.Errorf("packages %s: HEAD %s: %w", v, uri, err)
	}
	size := int64(0)
	if out.ContentLength != nil {
		size = *out.ContentLength
	}
	res.Checked = fmt.Sprintf("%s exists (%d bytes)", uri, size)
	return res, nil
}

func permanent(errType, format string, a ...any) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf(format, a...), errType, nil)
}

func isNotFound(err error) bool {
	var nk *types.NoSuchKey
	var nf *types.NotFound
	var nb *types.NoSuchBucket
	return errors.As(err, &nk) || errors.As(err, &nf) || errors.As(err, &nb)
}

func httpStatus(err error) int {
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}
