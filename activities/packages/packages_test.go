package packages_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/kiln-build/kiln/activities/packages"
	"github.com/kiln-build/kiln/test/kubestack"
	"github.com/kiln-build/kiln/test/s3test"
	"github.com/kiln-build/kiln/workflows"
)

// check runs CheckPackages for in in a test activity environment.
func check(t *testing.T, acts *packages.Activities, in workflows.PackagesCheckRequest) (string, error) {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	s.SetLogger(log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	ae := s.NewTestActivityEnvironment()
	ae.RegisterActivity(acts)
	v, err := ae.ExecuteActivity(acts.CheckPackages, in)
	if err != nil {
		return "", err
	}
	var res workflows.PackagesCheckResult
	if err := v.Get(&res); err != nil {
		t.Fatal(err)
	}
	return res.Checked, nil
}

// wantFailure checks err: its message holds every one of want, and it is
// non-retryable of errType, or retryable when errType is "".
func wantFailure(t *testing.T, err error, errType string, want ...string) {
	t.Helper()
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) {
		t.Fatalf("error = %v, want an application error", err)
	}
	if errType == "" && appErr.NonRetryable() {
		t.Errorf("error %q is non-retryable, want it retried", appErr.Message())
	}
	if errType != "" && (!appErr.NonRetryable() || appErr.Type() != errType) {
		t.Errorf("error %q: type %s, non-retryable %v; want non-retryable %s", appErr.Message(), appErr.Type(), appErr.NonRetryable(), errType)
	}
	for _, w := range want {
		if !strings.Contains(appErr.Message(), w) {
			t.Errorf("error %q lacks %q", appErr.Message(), w)
		}
	}
}

// TestCheckPackagesReadsTheReleaseFile serves Garden Linux's real InRelease
// file from a real HTTP server, laid out as packages.gardenlinux.io is.
func TestCheckPackagesReadsTheReleaseFile(t *testing.T) {
	inRelease := readFile(t, "gardenlinux-1877.14.InRelease")
	debian := readFile(t, "debian-trixie.Release")
	var flaky atomic.Int32
	mux := http.NewServeMux()
	serve := func(body []byte) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) { w.Write(body) }
	}
	mux.Handle("GET /gardenlinux/dists/1877.14/InRelease", serve(inRelease))
	// A mirror that serves one file for every distribution.
	mux.Handle("GET /mirror/dists/{dist}/InRelease", serve(inRelease))
	mux.Handle("GET /debian/dists/testing/Release", serve(debian))
	mux.Handle("GET /spa/dists/{dist}/InRelease", serve([]byte("<!DOCTYPE html>\n<html><body>Packages</body></html>\n")))
	mux.HandleFunc("GET /private/dists/{dist}/InRelease", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", http.StatusForbidden) })
	mux.HandleFunc("GET /flaky/dists/{dist}/InRelease", func(w http.ResponseWriter, r *http.Request) {
		flaky.Add(1)
		http.Error(w, "try later", http.StatusServiceUnavailable)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	acts := packages.New(srv.Client(), nil)
	url := func(path string) string { return srv.URL + path }

	got, err := check(t, acts, workflows.PackagesCheckRequest{Version: "1877.14", URL: url("/gardenlinux/dists/1877.14/InRelease")})
	if err != nil {
		t.Fatal(err)
	}
	if want := "GET " + url("/gardenlinux/dists/1877.14/InRelease") + " answered 200, Codename 1877.14"; got != want {
		t.Errorf("checked = %q, want %q", got, want)
	}
	got, err = check(t, acts, workflows.PackagesCheckRequest{Version: "testing", URL: url("/debian/dists/testing/Release")})
	if err != nil || !strings.HasSuffix(got, "answered 200, Suite testing") {
		t.Errorf("Debian's testing by its Suite: %q, %v", got, err)
	}

	_, err = check(t, acts, workflows.PackagesCheckRequest{Version: "1877.99", URL: url("/gardenlinux/dists/1877.99/InRelease")})
	wantFailure(t, err, workflows.ErrTypePackagesNotFound, "packages 1877.99 not found: GET "+url("/gardenlinux/dists/1877.99/InRelease")+" answered 404")
	_, err = check(t, acts, workflows.PackagesCheckRequest{Version: "1877.99", URL: url("/mirror/dists/1877.99/InRelease")})
	wantFailure(t, err, workflows.ErrTypePackagesNotFound, "packages 1877.99 not found", "another distribution (Codename 1877.14)")
	_, err = check(t, acts, workflows.PackagesCheckRequest{Version: "1877.14", URL: url("/spa/dists/1877.14/InRelease")})
	wantFailure(t, err, workflows.ErrTypePackagesCheckFailed, "packages 1877.14", "answered 200, but the body is no Release file", "not a field")
	_, err = check(t, acts, workflows.PackagesCheckRequest{Version: "1877.14", URL: url("/private/dists/1877.14/InRelease")})
	wantFailure(t, err, workflows.ErrTypePackagesCheckFailed, "packages 1877.14", "answered 403 Forbidden")

	// The server's own trouble is retried.
	_, err = check(t, acts, workflows.PackagesCheckRequest{Version: "1877.14", URL: url("/flaky/dists/1877.14/InRelease")})
	wantFailure(t, err, "", "packages 1877.14: GET "+url("/flaky/dists/1877.14/InRelease")+" answered 503")
	if flaky.Load() != 1 {
		t.Errorf("%d GETs of the flaky server, want 1: Temporal retries, not the activity", flaky.Load())
	}
	down := httptest.NewServer(mux)
	down.Close()
	_, err = check(t, acts, workflows.PackagesCheckRequest{Version: "1877.14", URL: down.URL + "/gardenlinux/dists/1877.14/InRelease"})
	wantFailure(t, err, "", "packages 1877.14: GET "+down.URL, "connection refused")
}

// TestCheckPackagesLooksForTheS3Key runs against the real versitygw, with
// Garden Linux's repository bucket laid out as gardenlinux/repo publishes
// it.
func TestCheckPackagesLooksForTheS3Key(t *testing.T) {
	srv, err := s3test.Start(context.Background(), t.TempDir())
	kubestack.SkipWithoutTools(t, err)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	c := srv.Client()
	bucket, key := "gardenlinux-repo", "gardenlinux/dists/1877.14/InRelease"
	if _, err := c.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
		t.Fatal(err)
	}
	body := readFile(t, "gardenlinux-1877.14.InRelease")
	if _, err := c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(body)}); err != nil {
		t.Fatal(err)
	}
	acts := packages.New(nil, c)

	got, err := check(t, acts, workflows.PackagesCheckRequest{Version: "1877.14", Bucket: bucket, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	if want := "s3://gardenlinux-repo/gardenlinux/dists/1877.14/InRelease exists"; !strings.HasPrefix(got, want) {
		t.Errorf("checked = %q, want it to start %q", got, want)
	}
	_, err = check(t, acts, workflows.PackagesCheckRequest{Version: "1877.99", Bucket: bucket, Key: "gardenlinux/dists/1877.99/InRelease"})
	wantFailure(t, err, workflows.ErrTypePackagesNotFound, "packages 1877.99 not found: s3://gardenlinux-repo/gardenlinux/dists/1877.99/InRelease does not exist")
	_, err = check(t, acts, workflows.PackagesCheckRequest{Version: "1877.14", Bucket: "nosuch", Key: key})
	wantFailure(t, err, workflows.ErrTypePackagesCheckFailed, "packages 1877.14", "the bucket nosuch does not exist", "packages.check.bucket")

	// Without storage, an S3 check cannot succeed on this worker.
	_, err = check(t, packages.New(nil, nil), workflows.PackagesCheckRequest{Version: "1877.14", Bucket: bucket, Key: key})
	wantFailure(t, err, workflows.ErrTypePackagesCheckFailed, "no storage")
}
