package storage_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.temporal.io/sdk/temporal"

	"github.com/kiln-build/kiln/activities/storage"
	"github.com/kiln-build/kiln/test/kubestack"
	"github.com/kiln-build/kiln/test/s3test"
)

// generated returns a reader of n pseudo-random bytes, the same for the same
// seed, without holding them in memory.
func generated(seed byte, n int64) io.Reader {
	return io.LimitReader(rand.NewChaCha8([32]byte{seed}), n)
}

// sha256Of hashes what r yields.
func sha256Of(t *testing.T, r io.Reader) (string, int64) {
	t.Helper()
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil)), n
}

func TestUpload(t *testing.T) {
	e := newEnv(t)
	const part = storage.MinPartSize
	for _, tt := range []struct {
		name      string
		size      int64
		partSize  int64
		wantParts int
	}{
		{"empty", 0, part, 0},
		{"small", 1000, part, 0},
		{"exactly one part", part, part, 0},
		{"one byte more", part + 1, part, 2},
		{"several parts", 5*part/2 + 7, part, 3},
		{"part size raised to the minimum", part + 1, 1 << 20, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			key := "logs/" + tt.name
			res, err := storage.Upload(context.Background(), e.s3, "staging", key, generated(1, tt.size), tt.partSize, "text/plain")
			if err != nil {
				t.Fatalf("upload: %v", err)
			}
			want, _ := sha256Of(t, generated(1, tt.size))
			if res.Bytes != tt.size || res.SHA256 != want || res.Parts != tt.wantParts {
				t.Errorf("result = %+v, want %d bytes, sha256 %s, %d parts", res, tt.size, want, tt.wantParts)
			}
			obj, err := e.s3.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String("staging"), Key: &key})
			if err != nil {
				t.Fatal(err)
			}
			defer obj.Body.Close()
			if got, n := sha256Of(t, obj.Body); got != want || n != tt.size {
				t.Errorf("object: %d bytes, sha256 %s; want %d, %s", n, got, tt.size, want)
			}
			if ct := aws.ToString(obj.ContentType); ct != "text/plain" {
				t.Errorf("content type = %q", ct)
			}
		})
	}
}

// failingReader yields what r yields, then err instead of io.EOF.
type failingReader struct {
	r   io.Reader
	err error
}

func (f *failingReader) Read(b []byte) (int, error) {
	n, err := f.r.Read(b)
	if err == io.EOF {
		return n, f.err
	}
	return n, err
}

func TestUploadAbortsOnError(t *testing.T) {
	e := newEnv(t)
	boom := errors.New("stream broke")
	key := "logs/broken"
	_, err := storage.Upload(context.Background(), e.s3, "staging", key, &failingReader{r: generated(2, 2*storage.MinPartSize+5), err: boom}, 0, "")
	if !errors.Is(err, boom) {
		t.Fatalf("error = %v, want the reader's", err)
	}
	if _, err := e.s3.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String("staging"), Key: &key}); err == nil {
		t.Error("a partial object was written")
	}
	ups, err := e.s3.ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: aws.String("staging")})
	if err != nil {
		t.Fatal(err)
	}
	if len(ups.Uploads) != 0 {
		t.Errorf("%d multipart uploads left, want the failed one aborted", len(ups.Uploads))
	}
}

func TestUploadToMissingBucketIsPermanent(t *testing.T) {
	e := newEnv(t)
	// A large single PutObject to a missing bucket may see the connection
	// reset before the answer; a multipart upload fails at its create.
	for _, size := range []int64{10, storage.DefaultPartSize + 1} {
		_, err := storage.Upload(context.Background(), e.s3, "no-such-bucket", "k", generated(3, size), 0, "")
		var appErr *temporal.ApplicationError
		if err = storage.Classify("upload", err); !errors.As(err, &appErr) || appErr.Type() != storage.ErrTypeAccessDenied || !appErr.NonRetryable() {
			t.Errorf("%d bytes: classified error = %v, want non-retryable %s", size, err, storage.ErrTypeAccessDenied)
		}
	}
}

// TestTransient sorts Upload's errors from real servers: refused
// credentials, a missing bucket, a broken body and a cancelled context are
// permanent; S3 down, and a 503 SlowDown, are transient.
func TestTransient(t *testing.T) {
	srv, err := s3test.Start(context.Background(), t.TempDir())
	kubestack.SkipWithoutTools(t, err)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	c := srv.Client()
	if _, err := c.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String("staging")}); err != nil {
		t.Fatal(err)
	}
	// client is a client of endpoint; attempts 0 keeps the SDK's three.
	client := func(endpoint, access, secret string, attempts int) *s3.Client {
		return s3.New(s3.Options{
			Region: "us-east-1", BaseEndpoint: aws.String(endpoint), UsePathStyle: true, RetryMaxAttempts: attempts,
			Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
				return aws.Credentials{AccessKeyID: access, SecretAccessKey: secret}, nil
			}),
		})
	}
	wrongSecret := client(srv.Endpoint, srv.Access, "wrong", 0)
	wrongKey := client(srv.Endpoint, "nobody", srv.Secret, 0)
	slowDown := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`)
	}))
	defer slowDown.Close()
	throttled := client(slowDown.URL, srv.Access, srv.Secret, 1)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()

	upload := func(ctx context.Context, c *s3.Client, bucket string, body io.Reader) error {
		_, err := storage.Upload(ctx, c, bucket, "k", body, 0, "")
		return err
	}
	permanent := map[string]error{
		"wrong secret":   upload(context.Background(), wrongSecret, "staging", generated(1, 10)),
		"unknown key id": upload(context.Background(), wrongKey, "staging", generated(1, 10)),
		"no such bucket": upload(context.Background(), c, "no-such-bucket", generated(1, 10)),
		"broken body":    upload(context.Background(), c, "staging", &failingReader{r: generated(1, 10), err: errors.New("disk gone")}),
		"cancelled":      upload(cancelled, c, "staging", generated(1, 10)),
	}
	transient := map[string]error{"503 SlowDown": upload(context.Background(), throttled, "staging", generated(1, 10))}
	srv.Stop()
	transient["S3 down, one attempt"] = upload(context.Background(), client(srv.Endpoint, srv.Access, srv.Secret, 1), "staging", generated(1, 10))
	transient["S3 down, the SDK's attempts"] = upload(context.Background(), c, "staging", generated(1, storage.DefaultPartSize+1))
	for name, err := range permanent {
		t.Logf("%s: %v", name, err)
		if err == nil || storage.Transient(err) {
			t.Errorf("%s: %v: want a permanent error", name, err)
		}
	}
	for name, err := range transient {
		t.Logf("%s: %v", name, err)
		if err == nil || !storage.Transient(err) {
			t.Errorf("%s: %v: want a transient error", name, err)
		}
	}
}
